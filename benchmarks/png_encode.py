"""PNG encoding speed and size: srtool's writer against OpenCV and Pillow.

    python benchmarks/png_encode.py IMAGE [IMAGE ...] [--rounds 3] [--level N]

For each image (use real upscaled outputs: encoders behave differently on smooth and on noisy
pixels) and for all of them together, prints megapixels per second and kilobytes for

- ``srtool``: :func:`srtool.imageio.png.encode_png` (Average rows, ISA-L's deflate at
  ``PNG_COMPRESS_LEVEL`` or ``--level``), as ``write_image`` uses it;
- ``srtool-zlib-ng``: the same encoder with zlib-ng's deflate at level 2 (what runs where isal
  has no wheel, and srtool's deflater before ISA-L);
- ``opencv``: libpng with Paeth rows, zlib level 1 and run-length matching (srtool's writer
  before its own encoder);
- ``pillow``: Pillow at ``compress_level=1`` (adaptive row filters);

and srtool's speed and size as ratios of OpenCV's, with the CPU name. One thread; compare numbers
from one run only.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from zlib_ng import zlib_ng

from srtool.environment import cpu_name
from srtool.imageio import png as srtool_png
from srtool.imageio import read_image
from srtool.imageio.formats import PNG_COMPRESS_LEVEL


def _plain(pixels: np.ndarray) -> np.ndarray:
    """Grey as a 2-D array (what OpenCV and Pillow take for one channel), colour as it is."""
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def _opencv(pixels: np.ndarray) -> int:
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY]
    params += [cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(_plain(pixels[:, :, ::-1])), params)
    assert ok
    return len(buffer)


def _pillow(pixels: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(_plain(pixels)).save(buffer, "PNG", compress_level=1)
    return len(buffer.getvalue())


def _srtool(pixels: np.ndarray) -> int:
    return len(srtool_png.encode_png(pixels))


def _srtool_zlib_ng(pixels: np.ndarray) -> int:
    deflater, level = srtool_png._deflate_lib, srtool_png.PNG_COMPRESS_LEVEL
    srtool_png._deflate_lib, srtool_png.PNG_COMPRESS_LEVEL = zlib_ng, 2
    try:
        return len(srtool_png.encode_png(pixels))
    finally:
        srtool_png._deflate_lib, srtool_png.PNG_COMPRESS_LEVEL = deflater, level


ENCODERS = {
    "srtool": _srtool,
    "srtool-zlib-ng": _srtool_zlib_ng,
    "opencv": _opencv,
    "pillow": _pillow,
}


def _timed(encode, pixels: np.ndarray, rounds: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        size = encode(pixels)
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--level", type=int, default=PNG_COMPRESS_LEVEL, help="srtool's level")
    args = parser.parse_args()
    srtool_png.PNG_COMPRESS_LEVEL = args.level
    cv2.setNumThreads(1)
    deflater = srtool_png._deflate_lib.__name__
    print(f"CPU: {cpu_name()}; srtool PNG level {args.level} ({deflater})")
    total = {name: [0.0, 0] for name in ENCODERS}
    mpix_total = 0.0
    for path in args.images:
        pixels = np.ascontiguousarray(read_image(path).pixels)
        if pixels.dtype != np.uint8:
            print(f"{path.name}: skipped (not 8-bit)")
            continue
        mpix = pixels.shape[0] * pixels.shape[1] / 1e6
        mpix_total += mpix
        line = [f"{path.name}: {pixels.shape[1]}x{pixels.shape[0]}"]
        for name, encode in ENCODERS.items():
            seconds, size = _timed(encode, pixels, args.rounds)
            total[name][0] += seconds
            total[name][1] += size
            line.append(f"{name} {mpix / seconds:5.1f} MPix/s {size / 1e3:7.0f} kB")
        print("  ".join(line))
    if mpix_total:
        rows = [
            f"{n} {mpix_total / t:5.1f} MPix/s {s / 1e3:8.0f} kB" for n, (t, s) in total.items()
        ]
        (t_srt, s_srt), (t_cv, s_cv) = total["srtool"], total["opencv"]
        ratios = f"srtool/opencv: speed x{t_cv / t_srt:.2f}, size x{s_srt / s_cv:.3f}"
        print("all: " + "  ".join(rows) + "  " + ratios)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
