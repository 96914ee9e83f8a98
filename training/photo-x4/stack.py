"""Stack `srtool evaluate --save-images` comparison sheets into one PNG, top to bottom.

python training/photo-x4/stack.py OUT.png SHEET.png [SHEET.png ...]
"""

from __future__ import annotations

import sys

from PIL import Image


def main(out: str, sheets: list[str]) -> None:
    images = [Image.open(p).convert("RGB") for p in sheets]
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height
    canvas.save(out, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
