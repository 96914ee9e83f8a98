"""The models shipped in exports/: installed, self-describing, documented, and better than bicubic.

These run the real shipped ONNX files through the same path as `srtool upscale`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srtool.infer import load_upscaler
from srtool.infer.catalog import DEFAULT_MODEL_FOR_SCALE, shipped_models
from srtool.infer.onnx_session import read_metadata
from srtool.metrics import psnr
from srtool.resize import imresize

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
SHIPPED = {
    name: folder
    for name, folder in shipped_models().items()
    if name in DEFAULT_MODEL_FOR_SCALE.values()
}


def test_the_default_x4_model_is_shipped() -> None:
    assert DEFAULT_MODEL_FOR_SCALE[4] in SHIPPED, sorted(shipped_models())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_describes_itself_and_has_a_card(name: str) -> None:
    folder = SHIPPED[name]
    meta = read_metadata(folder / "model.onnx")
    scale = next(s for s, n in DEFAULT_MODEL_FOR_SCALE.items() if n == name)
    assert meta["srtool.scale"] == str(scale)
    card = (folder / "card.md").read_text(encoding="utf-8")
    for heading in ("## Quality", "## Speed", "## Training", "## Export"):
        assert heading in card, heading
    assert "bicubic" in card and "Set14" in card and "BSD100" in card


@pytest.mark.parametrize("name", sorted(SHIPPED))
@pytest.mark.parametrize("photo", ["astronaut.png", "coffee.png"])
def test_shipped_model_beats_bicubic(name: str, photo: str) -> None:
    upscaler = load_upscaler(name, device="cpu")
    s = upscaler.scale
    hr = np.asarray(Image.open(PHOTOS / photo).convert("RGB"))
    hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
    lr = np.clip(np.round(imresize(hr, 1 / s)), 0, 255).astype(np.uint8)
    sr = upscaler.render(lr, dtype=np.uint8)
    bicubic = np.clip(np.round(imresize(lr, s)), 0, 255).astype(np.uint8)
    gain = psnr(sr, hr, crop_border=s) - psnr(bicubic, hr, crop_border=s)
    assert gain > 0.5, f"{name} on {photo}: {gain:+.2f} dB over bicubic"
