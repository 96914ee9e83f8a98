"""PNG encoding speed and size: srtool's writer against Pillow at the same zlib level.

    python benchmarks/png_encode.py IMAGE [IMAGE ...] [--rounds 5]

For each image (use real upscaled outputs: encoders behave differently on smooth and on noisy
pixels) prints megapixels per second and kilobytes for Pillow ``compress_level=1`` (adaptive
row filters) and for ``srtool.imageio.write_image`` (OpenCV, see ``_png_params``), and the
ratios, with the CPU name. One thread; compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srtool.environment import cpu_name
from srtool.imageio import Picture, read_image, write_image
from srtool.imageio.formats import PNG_COMPRESS_LEVEL


def _timed(encode, rounds: int) -> tuple[float, int]:
    encode()
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        size = encode()
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.png"
        for path in args.images:
            pixels = np.asarray(read_image(path).pixels)
            mpix = pixels.shape[0] * pixels.shape[1] / 1e6

            def pillow(pixels: np.ndarray = pixels) -> int:
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
                return len(buffer.getvalue())

            def srtool(pixels: np.ndarray = pixels) -> int:
                write_image(target, Picture(pixels))
                return target.stat().st_size

            t_pil, s_pil = _timed(pillow, args.rounds)
            t_srt, s_srt = _timed(srtool, args.rounds)
            print(
                f"{path.name}: {pixels.shape[1]}x{pixels.shape[0]}  "
                f"Pillow {mpix / t_pil:5.1f} MPix/s {s_pil / 1e3:7.0f} kB  "
                f"srtool {mpix / t_srt:5.1f} MPix/s {s_srt / 1e3:7.0f} kB  "
                f"speed x{t_pil / t_srt:.2f}, size x{s_srt / s_pil:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
