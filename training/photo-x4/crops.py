"""Side-by-side crops for the photo-x4 card: bicubic / compact-x4 / photo-x4 / HR.

    python training/photo-x4/crops.py --model exports/photo-x4/model.onnx \
        --data-root ../shared/data --out exports/photo-x4/crops.png

Rows: Set14 baboon with the bicubic protocol's LR and with the 'realistic' LR of
``srtool evaluate --degradation realistic``, Set14 comic and a BSD100 photo (realistic LR),
another BSD100 photo (bicubic LR), and a real camera photo (``tests/data/photos/coffee.png``)
saved as JPEG quality 75 and upscaled as a user would (no HR exists for it, so its last column
repeats the JPEG, enlarged by nearest neighbour). Every SR image comes from the ONNX files
through srtool's own upscaler; each crop is shown at 2x (nearest neighbour) so single pixels
stay visible.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srtool.evaluate.benchmarks import make_lr, read_u8
from srtool.infer import load_upscaler
from srtool.resize import imresize, modcrop

ROOT = Path(__file__).resolve().parents[2]
#: (set, image, protocol, top, left) of a 96x96 HR crop
ROWS = [
    ("Set14", "baboon", "bicubic", 40, 300),
    ("Set14", "baboon", "realistic", 40, 300),
    ("Set14", "comic", "realistic", 120, 60),
    ("BSD100", "img_003", "realistic", 120, 200),
    ("BSD100", "img_012", "bicubic", 100, 180),
]
SIZE, ZOOM, CONTEXT = 96, 2, 4


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _row(tiles: list[np.ndarray], label: str) -> Image.Image:
    gap = 4
    width = len(tiles) * (SIZE * ZOOM + gap)
    canvas = Image.new("RGB", (width, SIZE * ZOOM + 16), "white")
    for i, tile in enumerate(tiles):
        im = Image.fromarray(tile).resize((SIZE * ZOOM, SIZE * ZOOM), Image.NEAREST)
        canvas.paste(im, (i * (SIZE * ZOOM + gap), 16))
    ImageDraw.Draw(canvas).text((2, 2), label, fill="black")
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the photo-x4 ONNX file")
    parser.add_argument("--baseline", default="compact-x4")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    photo = load_upscaler(args.model, device="cpu")
    base = load_upscaler(args.baseline, device="cpu")
    header = "columns: bicubic | " + args.baseline + " | photo-x4 | HR"
    rows = []
    for bench, name, protocol, top, left in ROWS:
        hr = modcrop(read_u8(args.data_root / bench / f"{name}.png"), 4)
        lr = make_lr(hr, 4, name, protocol)
        lt, ll, ls = top // 4, left // 4, SIZE // 4
        c = CONTEXT  # LR pixels of context on every side, cut off after upscaling
        patch = lr[lt - c : lt + ls + c, ll - c : ll + ls + c]
        outs = [_u8(imresize(patch, 4.0)), base.render(patch, dtype=np.uint8)]
        outs.append(photo.render(patch, dtype=np.uint8))
        tiles = [o[4 * c : 4 * c + SIZE, 4 * c : 4 * c + SIZE] for o in outs]
        tiles.append(hr[top : top + SIZE, left : left + SIZE])
        rows.append(_row(tiles, f"{bench} {name}, {protocol} LR"))
    coffee = np.asarray(Image.open(ROOT / "tests/data/photos/coffee.png").convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(coffee).save(buffer, "JPEG", quality=75)
    jpeg = np.asarray(Image.open(buffer).convert("RGB"))
    top, left, s = 250, 335, SIZE // 4  # the spoon and the saucer rim
    c = CONTEXT
    patch = jpeg[top - c : top + s + c, left - c : left + s + c]
    outs = [_u8(imresize(patch, 4.0)), base.render(patch, dtype=np.uint8)]
    outs.append(photo.render(patch, dtype=np.uint8))
    tiles = [o[4 * c : 4 * c + SIZE, 4 * c : 4 * c + SIZE] for o in outs]
    tiles.append(np.repeat(np.repeat(patch[c:-c, c:-c], 4, axis=0), 4, axis=1))
    label = "real photo (coffee.png as JPEG q75), no HR: last = the JPEG, 4x nearest"
    rows.append(_row(tiles, label))
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, 16 + sum(r.height for r in rows)), "white")
    ImageDraw.Draw(sheet).text((2, 2), header, fill="black")
    y = 16
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
