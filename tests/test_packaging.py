"""The wheel installs one import name, `latentdex`: an application with its own `models` and `service`
packages embeds the client and runs the demo from the installed wheel without either shadowing the other."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed (without dependencies: those of this venv serve) into a
    folder of its own; returns that folder.

    It is built from a copy of the files git tracks or would track: setuptools builds in the source's
    `build/`, where files of earlier builds would otherwise linger and slip into the wheel.
    """
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run(listed, cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(source),
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(root),
    ]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    [wheel] = root.glob("latentdex-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names if not name.startswith("latentdex-")}
    assert tops == {"latentdex"}, f"the wheel installs more than one top-level name: {sorted(tops)}"
    web_app = {name for name in names if name.startswith("latentdex/service/web/")}
    shipped = {f"latentdex/service/web/{p.name}" for p in (REPO / "service" / "web").iterdir()}
    assert web_app == shipped, "the web app's files ship in the wheel"
    target = root / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    return target


@pytest.fixture
def application(tmp_path: Path) -> Path:
    """A folder like a web app's: its own `models` and `service` packages."""
    for name in ("models", "service", "indexer"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'the application'\nNAME = {name!r}\n")
    return tmp_path


def run_python(code: str, cwd: Path, site: Path, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


APPLICATION_PROBE = """
import sys
import models, service
import latentdex.errors as errors
import latentdex.service.client as client

print(models.OWNER, service.OWNER)
print(client.__file__.startswith(SITE), errors.__file__.startswith(SITE))
print(sorted(name for name in ("models.errors", "service.client", "indexer.store") if name in sys.modules))
"""

CLIENT_PROBE = """
import models
from latentdex.models.inference import LatentCodec
from latentdex.service.client import connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import start_server
from latentdex.service.server_config import ServerConfig

live = LiveStore("demo/store")
running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0))
with connect(f"127.0.0.1:{running.port}") as client:
    match = client.query_by_image("demo/samples/scene-000.jpg", 1).matches[0]
    print(client.info().image_count, match.path, models.OWNER)
running.stop(0)
live.close()
"""


@pytest.mark.slow
def test_the_application_and_latentdex_each_import_their_own_packages(
    installed: Path, application: Path
) -> None:
    code = f"SITE = {str(installed)!r}\n" + APPLICATION_PROBE
    lines = run_python(code, application, installed).splitlines()
    assert lines == ["the application the application", "True True", "[]"]


@pytest.mark.slow
def test_the_installed_demo_runs_and_its_client_answers_beside_the_applications_packages(
    installed: Path, application: Path
) -> None:
    out = run_python("", application, installed, "-m", "latentdex.service.cli", "demo", "--out", "demo")
    assert "serving on 127.0.0.1" in out and (application / "demo" / "contact-sheet.png").is_file()
    assert run_python(CLIENT_PROBE, application, installed).split() == [
        "24",
        "scene-000.jpg",
        "the",
        "application",
    ]


def test_the_project_imports_itself_only_as_latentdex() -> None:
    """Run from the repository, `models`, `indexer` and `service` would also import as top-level names, and
    each module would then exist twice (two NotFound classes, two stores): no file may use those names."""
    pattern = re.compile(r"^\s*(from|import) (models|indexer|service)(\.|\s)")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("models", "indexer", "service", "bench", "tests")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "test_packaging.py"  # its probes play the application's own packages
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.match(line)
    ]
    assert offenders == []
