"""The held-out ROC figure of the duplicates benchmark (Pillow only).

One step curve per method on a log false-positive axis, the VAE's `near` and `similar` presets, pHash <= 10
and the two-signal rules (latent + pHashes, the presets `duplicates` uses) marked, and a legend with each
method's held-out AUC.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.pair_metrics import PIXELS, VAE_COSINE, VAE_WHITENED, PairLabels

COLOURS = {
    VAE_WHITENED: (31, 119, 180),
    VAE_COSINE: (120, 180, 225),
    "phash": (214, 39, 40),
    "dhash": (255, 140, 30),
    PIXELS: (130, 130, 130),
}
TWO_SIGNALS = (30, 140, 60)
REGION_CHECK = (148, 60, 170)
LABELS = {
    VAE_WHITENED: "VAE whitened cosine",
    VAE_COSINE: "VAE raw cosine",
    "phash": "pHash (Hamming)",
    "dhash": "dHash (Hamming)",
    PIXELS: "whitened pixel PCA",
}


def draw_roc(
    methods: dict[str, Any],
    labels: PairLabels,
    path: Path,
    two_signals: dict[str, Any] | None = None,
    region_rules: dict[str, Any] | None = None,
    width: int = 800,
    height: int = 600,
) -> None:
    """The held-out ROC of every method on a log false-positive axis, with the presets marked, and the
    two-signal rules' operating points (`two_signals`: preset -> calibrated rule) and those with the
    region check (`region_rules`) as diamonds (Pillow, drawn at 2x and downsampled for smooth lines)."""
    scale = 2
    image = Image.new("RGB", (width * scale, height * scale), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13 * scale)
    small = ImageFont.load_default(size=11 * scale)
    title_font = ImageFont.load_default(size=16 * scale)
    left, right, top, bottom = 78 * scale, (width - 24) * scale, 54 * scale, (height - 62) * scale
    negatives = int((~labels.positive[labels.held_out]).sum())
    positives = int(labels.positive[labels.held_out].sum())
    low = 10.0 ** np.floor(np.log10(1 / max(negatives, 1)))

    def x_of(fpr: float) -> float:
        return left + (np.log10(max(fpr, low)) - np.log10(low)) / -np.log10(low) * (right - left)

    def y_of(tpr: float) -> float:
        return bottom - tpr * (bottom - top)

    grid, axis, ink = (228, 228, 228), (90, 90, 90), (40, 40, 40)
    for exponent in range(int(np.log10(low)), 1):
        x = x_of(10.0**exponent)
        draw.line((x, top, x, bottom), fill=grid, width=scale)
        label = "1" if exponent == 0 else f"1e{exponent}"
        draw.text((x, bottom + 8 * scale), label, fill=ink, font=font, anchor="mt")
        for minor in range(2, 10):
            if exponent < 0:
                mx = x_of(minor * 10.0**exponent)
                draw.line((mx, bottom, mx, bottom - 4 * scale), fill=axis, width=scale)
    for tick in np.linspace(0, 1, 11):
        y = y_of(tick)
        draw.line((left, y, right, y), fill=grid, width=scale)
        draw.text((left - 8 * scale, y), f"{tick:.1f}", fill=ink, font=font, anchor="rm")
    draw.rectangle((left, top, right, bottom), outline=axis, width=scale)
    draw.text(
        ((left + right) / 2, 18 * scale),
        f"Near-duplicate pairs, held-out split ({positives} same / {negatives} different pictures)",
        fill=ink,
        font=title_font,
        anchor="mt",
    )
    draw.text(
        ((left + right) / 2, bottom + 30 * scale),
        "false-positive rate (different pictures called duplicates, log scale)",
        fill=ink,
        font=font,
        anchor="mt",
    )
    axis_label = Image.new("RGBA", (300 * scale, 20 * scale), (255, 255, 255, 0))
    ImageDraw.Draw(axis_label).text(
        (150 * scale, 10 * scale), "true-positive rate (recall)", fill=ink, font=font, anchor="mm"
    )
    axis_label = axis_label.rotate(90, expand=True)
    image.paste(axis_label, (12 * scale, round((top + bottom) / 2 - 150 * scale)), axis_label)

    order = [PIXELS, "dhash", "phash", VAE_COSINE, VAE_WHITENED]  # the VAE drawn last, on top
    for name in order:
        curve = methods[name]["roc_held_out"]
        points = [(x_of(f), y_of(t)) for f, t in zip(curve["fpr"], curve["tpr"], strict=True)]
        steps = []
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            steps += [(x0, y0), (x1, y0), (x1, y1)]
        draw.line(steps, fill=COLOURS[name], width=(3 if name == VAE_WHITENED else 2) * scale, joint="curve")

    marks = []
    for preset, shape in (("near", "dot"), ("similar", "ring")):
        point = methods[VAE_WHITENED]["presets"][preset]
        held = point["held_out"]
        marks.append(
            (
                held["fpr"],
                held["recall"],
                shape,
                f"{preset} ({point['threshold']:.4f})",
                COLOURS[VAE_WHITENED],
            )
        )
    phash = methods["phash"]["fixed"]["<=10"]["held_out"]
    marks.append((phash["fpr"], phash["recall"], "square", "pHash <= 10", COLOURS["phash"]))
    for preset, calibrated in (two_signals or {}).items():
        if calibrated.get("reached"):
            held = calibrated["held_out"]
            marks.append((held["fpr"], held["recall"], "diamond", f"latent + pHashes {preset}", TWO_SIGNALS))
    for preset, calibrated in (region_rules or {}).items():
        if calibrated.get("reached"):
            held = calibrated["held_out"]
            label = f"+ region check {preset}"
            marks.append((held["fpr"], held["recall"], "diamond", label, REGION_CHECK))
    for fpr, tpr, shape, text, colour in marks:
        x, y, r = x_of(fpr), y_of(tpr), 6 * scale
        if shape == "dot":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="white", width=scale)
        elif shape == "ring":
            draw.ellipse((x - r, y - r, x + r, y + r), fill="white", outline=colour, width=2 * scale)
        elif shape == "diamond":
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=colour, outline="white")
        else:
            draw.rectangle((x - r, y - r, x + r, y + r), fill="white", outline=colour, width=2 * scale)
        box = draw.textbbox((x + 9 * scale, y + 9 * scale), text, font=small, anchor="lt")
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(255, 255, 255))
        draw.text((x + 9 * scale, y + 9 * scale), text, fill=ink, font=small, anchor="lt")

    rows = [name for name in reversed(order)]
    line_height = 20 * scale
    box_width = 250 * scale
    box_left, box_top = right - box_width - 12 * scale, bottom - line_height * len(rows) - 22 * scale
    draw.rectangle(
        (box_left, box_top, right - 12 * scale, bottom - 12 * scale), fill="white", outline=grid, width=scale
    )
    for n, name in enumerate(rows):
        y = box_top + 10 * scale + n * line_height + line_height / 2
        draw.line((box_left + 10 * scale, y, box_left + 38 * scale, y), fill=COLOURS[name], width=3 * scale)
        value = methods[name]["auc"]["held_out"]
        draw.text(
            (box_left + 46 * scale, y), f"{LABELS[name]}  AUC {value:.4f}", fill=ink, font=small, anchor="lm"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.resize((width, height), Image.Resampling.LANCZOS).save(path, optimize=True)
