"""read_image on hostile files: bounded memory and work, complete image data, and the decoders'
own chatter kept off stderr. Memory is measured in a fresh process (peak RSS before and after
the read), so that what the test process already holds does not hide a spike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_factory import adam7_rows, chunk, icc_bomb, png, rows
from PIL import Image, ImageCms

from srtool.errors import ImageReadError
from srtool.imageio import Picture, read_image, write_image

REPO_ROOT = Path(__file__).resolve().parents[1]
ICC_CAP_MIB = 16  # srtool.imageio.png.MAX_ICC_BYTES, the documented cap
RNG = np.random.default_rng(7)

_MEASURE = textwrap.dedent(
    """
    import json, logging, resource, sys, time
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from srtool.imageio import read_image
    results = []
    for path in sys.argv[1:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            picture = read_image(path)
            outcome = {"shape": list(picture.pixels.shape), "bits": picture.bit_depth,
                       "icc": None if picture.icc_profile is None else len(picture.icc_profile)}
        except Exception as exc:
            outcome = {"error": type(exc).__name__, "message": str(exc)}
        outcome["seconds"] = time.perf_counter() - start
        outcome["rss_growth_mib"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        results.append(outcome)
    print(json.dumps(results))
    """
)


def measure_reads(*paths: Path, timeout: float = 60) -> tuple[list[dict], str]:
    """read_image on each path in a fresh process: outcome, seconds and peak-RSS growth."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def picture_rgb(height: int = 30, width: int = 40, dtype=np.uint8) -> np.ndarray:
    peak = np.iinfo(dtype).max
    return RNG.integers(0, peak, (height, width, 3), dtype=dtype, endpoint=True)


# --------------------------------------------------------------------------- D3: iCCP bomb


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8bit", "16bit"])
def test_icc_bomb_is_dropped_with_bounded_memory(tmp_path: Path, dtype) -> None:
    """A 270 KB PNG whose iCCP chunk inflates to 256 MiB: the image is read, the profile is
    dropped with a warning, and the reader never holds more than the cap."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png(picture_rgb(dtype=dtype), before_idat=icc_bomb(256)))
    assert path.stat().st_size < 300_000
    [result], stderr = measure_reads(path)
    assert result.get("shape") == [30, 40, 3], result
    assert result["bits"] == (16 if dtype == np.uint16 else 8)
    assert result["icc"] is None
    assert "WARNING bomb.png: ICC profile inflates to more than 16 MiB" in stderr
    assert result["rss_growth_mib"] < 3 * ICC_CAP_MIB, result  # 256 MiB when unbounded


def test_many_icc_bombs_cost_one(tmp_path: Path) -> None:
    """Only the first iCCP chunk is inflated: 200 bombs must not mean 200 x 16 MiB of work."""
    path = tmp_path / "bombs.png"
    path.write_bytes(png(picture_rgb(), before_idat=icc_bomb(64) * 200))
    start = time.perf_counter()
    assert read_image(path).icc_profile is None
    assert time.perf_counter() - start < 2


def test_icc_profile_up_to_the_cap_is_kept(tmp_path: Path) -> None:
    """Profiles larger than Pillow's own 1 MiB text limit are legal and kept (Pillow used to
    refuse the whole file)."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profile += bytes(RNG.integers(0, 256, 3 << 20, dtype=np.uint8))  # 3 MiB, incompressible
    body = b"big\x00\x00" + zlib.compress(profile)
    for dtype in (np.uint8, np.uint16):
        path = tmp_path / f"icc{np.dtype(dtype).itemsize}.png"
        path.write_bytes(png(picture_rgb(dtype=dtype), before_idat=chunk(b"iCCP", body)))
        assert read_image(path).icc_profile == profile


# --------------------------------------------------------------------------- D5: huge files


def test_huge_and_special_files_refused_before_reading(tmp_path: Path) -> None:
    """Nothing is read whole before the header is checked, and only regular files are read."""
    zeros = tmp_path / "zeros.png"
    with open(zeros, "wb") as f:
        f.truncate(2 << 30)  # 2 GiB, sparse
    padded = tmp_path / "padded.png"
    padded.write_bytes(png(picture_rgb()))
    with open(padded, "r+b") as f:
        f.truncate(2 << 30)  # a valid 40x30 header, then 2 GiB
    padded_jpeg = tmp_path / "padded.jpg"
    write_image(padded_jpeg, Picture(picture_rgb()))
    with open(padded_jpeg, "r+b") as f:
        f.truncate(1 << 30)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    device = tmp_path / "zero.png"
    device.symlink_to("/dev/zero")
    results, _ = measure_reads(zeros, padded, padded_jpeg, fifo, device, timeout=60)
    messages = [r.get("message", "") for r in results]
    assert "not an image" in messages[0]
    assert "2,048 MiB is far larger than a 40x30 PNG needs" in messages[1]
    assert "1,024 MiB is far larger than a 40x30 JPEG needs" in messages[2]
    assert "not a regular file (a FIFO)" in messages[3]
    assert "not a regular file (a device)" in messages[4]
    for result in results:
        assert result["error"] == "ImageReadError", result
        assert result["seconds"] < 2 and result["rss_growth_mib"] < 16, result


def _unusual_layouts(folder: Path) -> list[Path]:
    """Files whose header is not where a naive parser looks: directories at the end, big
    segments before the frame header, bottom-up rows, extra frames."""
    rgb = picture_rgb()
    image = Image.fromarray(rgb)
    image.save(folder / "big.tif", big_tiff=True, compression="tiff_lzw")
    image.save(folder / "multi.tif", save_all=True, append_images=[Image.fromarray(rgb[::-1])])
    cv2.imwrite(str(folder / "deep.tif"), rgb.astype(np.uint16) * 257)  # directory at the end
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(folder / "icc.jpg", icc_profile=profile + bytes(3 << 20))  # 49 APP2 segments
    image.save(folder / "progressive.jpg", progressive=True)
    image.save(folder / "topdown.bmp")
    bmp = bytearray((folder / "topdown.bmp").read_bytes())
    bmp[22:26] = (-30).to_bytes(4, "little", signed=True)
    (folder / "topdown.bmp").write_bytes(bytes(bmp))
    image.convert("1").save(folder / "bilevel.bmp")
    image.save(folder / "anim.png", save_all=True, append_images=[Image.fromarray(rgb[::-1])])
    image.save(folder / "anim.webp", save_all=True, append_images=[Image.fromarray(rgb[::-1])])
    return sorted(folder.iterdir())


def test_headers_of_unusual_layouts(tmp_path: Path) -> None:
    """The size read from the first bytes is the size the decoder finds."""
    for path in _unusual_layouts(tmp_path):
        assert read_image(path).pixels.shape[:2] == (30, 40), path
        with pytest.raises(ImageReadError, match=rf"{path.name}: 40x30 = .* over the limit"):
            read_image(path, max_pixels=1199)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp"])
def test_padded_file_refused_for_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"padded{suffix}"
    write_image(path, Picture(picture_rgb()))
    with open(path, "r+b") as f:
        f.truncate(70 << 20)  # sparse; 40x30 allows 64 MiB + 4 x 3.6 KB
    with pytest.raises(ImageReadError, match=r"70 MiB is far larger than a 40x30 .* needs"):
        read_image(path)


def test_file_size_bound_leaves_real_files_alone(tmp_path: Path) -> None:
    """Incompressible pixels and megabytes of metadata on a small image are still read."""
    noise = picture_rgb(64, 64)
    for name, params in [
        ("q100.jpg", {"quality": 100, "subsampling": 0}),
        ("lzw.tif", {"compression": "tiff_lzw"}),
    ]:
        Image.fromarray(noise).save(tmp_path / name, **params)
        assert read_image(tmp_path / name).pixels.shape == (64, 64, 3)
    text = chunk(b"tEXt", b"Comment\x00" + b"x" * (8 << 20))
    (tmp_path / "notes.png").write_bytes(png(noise, before_idat=text))
    np.testing.assert_array_equal(read_image(tmp_path / "notes.png").pixels, noise)


# --------------------------------------------------------------------------- D11: short data


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8bit", "16bit"])
def test_png_missing_rows_refused(tmp_path: Path, dtype) -> None:
    """A complete zlib stream holding 15 of the 30 rows the header declares."""
    pixels = picture_rgb(dtype=dtype)
    path = tmp_path / "half.png"
    path.write_bytes(png(pixels, data=zlib.compress(rows(pixels[:15]))))
    with pytest.raises(ImageReadError, match=r"half\.png: truncated PNG .*15 of 30 rows"):
        read_image(path)


@pytest.mark.parametrize("damage", ["header", "middle"])
def test_png_undecodable_image_data_is_one_line(tmp_path: Path, damage: str) -> None:
    """A zlib stream that cannot be inflated (a bad header, or bytes overwritten in the middle)
    is a one-line corrupt-PNG error from the inflater srtool checks with (ISA-L or zlib-ng),
    whose errors are not ``zlib.error``."""
    pixels = picture_rgb()
    data = bytearray(zlib.compress(rows(pixels)))
    if damage == "header":
        data[0] = 0x00  # no zlib method
    else:
        data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
    path = tmp_path / "garbled.png"
    path.write_bytes(png(pixels, data=bytes(data)))
    with pytest.raises(ImageReadError, match=r"garbled\.png: corrupt PNG \(image data"):
        read_image(path)


def test_png_bad_row_filter_refused(tmp_path: Path) -> None:
    pixels = picture_rgb(dtype=np.uint16)
    data = bytearray(rows(pixels))
    data[(1 + 40 * 6) * 7] = 9  # row 7's filter type
    path = tmp_path / "filter.png"
    path.write_bytes(png(pixels, data=zlib.compress(bytes(data))))
    with pytest.raises(ImageReadError, match=r"filter\.png: corrupt PNG .*filter type 9"):
        read_image(path)


@pytest.mark.parametrize(
    ("height", "width", "channels", "dtype"),
    [
        (1, 1, 3, np.uint8),
        (5, 3, 3, np.uint8),
        (30, 40, 3, np.uint8),
        (13, 9, 4, np.uint16),
        (30, 40, 3, np.uint16),
        (7, 2, 1, np.uint8),
    ],
)
def test_interlaced_png_read_exactly(tmp_path: Path, height, width, channels, dtype) -> None:
    """Adam7 image data is laid out in passes; its expected length is counted pass by pass."""
    peak = np.iinfo(dtype).max
    pixels = RNG.integers(0, peak, (height, width, channels), dtype=dtype, endpoint=True)
    path = tmp_path / "adam7.png"
    path.write_bytes(png(pixels, interlace=True))
    picture = read_image(path)
    got = picture.pixels if picture.alpha is None else np.dstack((picture.pixels, picture.alpha))
    np.testing.assert_array_equal(got, pixels.reshape(got.shape))
    path.write_bytes(png(pixels, interlace=True, data=zlib.compress(adam7_rows(pixels)[:-1])))
    with pytest.raises(ImageReadError, match="truncated PNG"):  # one byte short
        read_image(path)


def test_png_image_data_split_and_trailing_bytes(tmp_path: Path) -> None:
    """Many small IDAT chunks, and extra bytes after a complete stream, are still read."""
    pixels = picture_rgb()
    path = tmp_path / "split.png"
    path.write_bytes(png(pixels, idat_size=7))
    np.testing.assert_array_equal(read_image(path).pixels, pixels)
    path.write_bytes(png(pixels, data=zlib.compress(rows(pixels) + bytes(500))))
    np.testing.assert_array_equal(read_image(path).pixels, pixels)


# --------------------------------------------------------------------------- D14: quiet decoders


def _noisy_files(folder: Path) -> list[Path]:
    """Broken files that make libtiff, libpng and Pillow print to stderr."""
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([x * 6, y * 8, (x + y) * 3], 2).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "camera"
    made = {}
    for name, params in [
        ("lzw.tif", {"compression": "tiff_lzw"}),
        ("deflate.tif", {"compression": "tiff_adobe_deflate"}),
        ("exif.tif", {"compression": "tiff_lzw", "exif": exif.tobytes()}),
    ]:
        Image.fromarray(rgb).save(folder / name, **params)
        made[name] = (folder / name).read_bytes()
    made["16.tif"] = cv2.imencode(".tiff", rgb.astype(np.uint16) * 257)[1].tobytes()
    made["16.png"] = cv2.imencode(".png", rgb.astype(np.uint16) * 257)[1].tobytes()
    paths = []
    for name, data in made.items():
        for cut in (len(data) // 4, len(data) - 10):
            paths.append(folder / f"cut{cut}_{name}")
            paths[-1].write_bytes(data[:cut])
        for seed in range(4):
            garbled = bytearray(data)
            for at in np.random.default_rng(seed).integers(8, len(data), 8):
                garbled[at] ^= 0xFF
            paths.append(folder / f"garbled{seed}_{name}")
            paths[-1].write_bytes(bytes(garbled))
    return paths


def test_decoder_noise_stays_off_stderr(tmp_path: Path) -> None:
    """libpng/libtiff lines and Pillow's UserWarnings used to reach the terminal."""
    paths = _noisy_files(tmp_path)
    results, stderr = measure_reads(*paths)
    assert len(results) == len(paths)
    assert sum("error" in r for r in results) >= 10  # many of them really are broken
    assert stderr == ""


def test_quiet_stderr_passes_everything_else_through(capfd: pytest.CaptureFixture) -> None:
    """While descriptor 2 is redirected, other threads' lines still reach stderr, once."""
    from srtool.imageio.quiet import _quiet_stderr

    def other_thread() -> None:
        os.write(2, b"[1/3] done a.png -> out/a.png\n")

    with _quiet_stderr():
        os.write(2, b"libpng error: bad adaptive filter value\n")
        os.write(2, b"tempfile.tif: Using code not yet in table.\n")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        os.write(2, b"failed b.png: corrupt.\nerror: stopped.\nValueError: boom.\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == (
        "[1/3] done a.png -> out/a.png\nfailed b.png: corrupt.\nerror: stopped.\n"
        "ValueError: boom.\nafter\n"
    )
