"""LatentCodec's arithmetic choices, and what the `latentdex` entry point loads before a command runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import shape_image

from latentdex.models.inference import LatentCodec, cpu_bf16_instructions, resolve_precision


def test_precision_names_are_checked_and_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")
    monkeypatch.setattr("latentdex.models.inference.cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr("latentdex.models.inference.cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(True, True, "amx"), (False, True, "avx512_bf16"), (True, False, "amx"), (False, False, None)],
)
def test_native_bf16_is_amx_or_avx512_bf16(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: str | None
) -> None:
    monkeypatch.setattr("torch.cpu._is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr("torch.cpu._is_avx512_bf16_supported", lambda: avx512_bf16)
    assert cpu_bf16_instructions() == expected
    assert resolve_precision("auto") == ("fp32" if expected is None else "bf16")


def test_a_torch_without_the_probes_means_no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr("torch.cpu._is_amx_tile_supported")
    monkeypatch.delattr("torch.cpu._is_avx512_bf16_supported")
    assert cpu_bf16_instructions() is None


def test_inputs_longer_than_a_batch_are_encoded_and_decoded_in_chunks() -> None:
    images = np.stack([np.asarray(shape_image(seed, 1, 64)) for seed in range(10)])
    whole, chunked = LatentCodec.load(), LatentCodec.load(batch_size=4)
    np.testing.assert_allclose(chunked.encode(images), whole.encode(images), rtol=1e-4, atol=1e-5)
    mu = whole.encode(images)
    assert chunked.decode(mu).shape == (10, 64, 64, 3)
    assert np.abs(chunked.decode(mu).astype(int) - whole.decode(mu).astype(int)).max() <= 1


def test_bf16_latents_and_decodes_stay_close_to_fp32() -> None:
    exact, fast = LatentCodec.load(precision="fp32"), LatentCodec.load(precision="bf16")
    images = np.stack([np.asarray(shape_image(seed, seed % 3, 64)) for seed in range(12)])
    mu, mu_fast = exact.encode(images), fast.encode(images)
    assert mu_fast.dtype == np.float32 and mu_fast.shape == mu.shape
    cosine = (mu * mu_fast).sum(1) / np.linalg.norm(mu, axis=1) / np.linalg.norm(mu_fast, axis=1)
    assert cosine.min() > 0.999
    # each image's bf16 latent is nearer its own fp32 latent than any other image's
    distances = np.linalg.norm(mu_fast[:, None] - mu[None], axis=2)
    assert (distances.argmin(axis=1) == np.arange(len(mu))).all()
    pixels, pixels_fast = exact.decode(mu), fast.decode(mu)
    assert pixels_fast.dtype == np.uint8
    assert np.abs(pixels.astype(int) - pixels_fast.astype(int)).mean() < 2.0


def test_the_console_entry_point_loads_no_torch_faiss_or_sqlalchemy() -> None:
    # decode workers re-import the parent's main script: it must stay this light
    probe = (
        "import sys, latentdex.service.launcher; "
        "print(sorted({'torch', 'faiss', 'sqlalchemy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
