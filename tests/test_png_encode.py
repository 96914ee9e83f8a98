"""srtool's PNG encoder (:func:`srtool.imageio.png.encode_png`), checked against decoders it
does not share code with (Pillow for 8 bits, OpenCV for 16) and against the PNG specification's
filter written out byte by byte."""

from __future__ import annotations

import io
import platform
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from srtool.imageio import png, read_image

PHOTO = Path(__file__).parent / "data" / "photos" / "coffee.png"


def _content(height: int, width: int, samples: int, dtype: type, seed: int) -> np.ndarray:
    """Smooth ramps with noise on top: every filter branch (left, above, both, odd sums) gets
    exercised, and at 16 bits both bytes of a sample vary."""
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    y, x = np.mgrid[0:height, 0:width]
    ramp = (x * 7 + y * 13)[:, :, None] * np.arange(1, samples + 1) % (top + 1)
    noise = rng.integers(0, top // 8 + 1, size=(height, width, samples))
    return ((ramp + noise) % (top + 1)).astype(dtype)


def _decoded(data: bytes, depth: int, samples: int) -> np.ndarray:
    if depth == 8:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            out = np.asarray(image)
        return out if out.ndim == 3 else out[:, :, None]
    out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if out.ndim == 2:
        return out[:, :, None]
    if samples == 2:  # OpenCV expands grey+alpha to BGRA
        return out[:, :, [0, 3]]
    return out[:, :, [2, 1, 0, 3][: out.shape[2]]]


def _chunk_lengths(data: bytes) -> list[tuple[bytes, int]]:
    found, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        found.append((data[pos + 4 : pos + 8], length))
        pos += 12 + length
    return found


def _chunks(data: bytes) -> list[bytes]:
    return [kind for kind, _ in _chunk_lengths(data)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8bit", "16bit"])
@pytest.mark.parametrize(
    "channels,with_alpha",
    [(1, False), (1, True), (3, False), (3, True)],
    ids=["L", "LA", "RGB", "RGBA"],
)
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (150, 1), (150, 37)], ids=str)
def test_every_mode_decodes_to_the_same_samples(
    dtype: type, channels: int, with_alpha: bool, shape: tuple[int, int]
) -> None:
    """Grey, grey+alpha, RGB and RGBA at 8 and 16 bits, one pixel up to several strips of rows
    (150 rows > the 64 encoded at a time), come back exactly from another decoder."""
    samples = _content(*shape, channels + with_alpha, dtype, seed=sum(shape) + channels)
    pixels, alpha = samples[:, :, :channels], samples[:, :, channels] if with_alpha else None
    data = png.encode_png(pixels, alpha)
    depth = 16 if dtype == np.uint16 else 8
    assert data[24] == depth and data[25] == {1: 0, 2: 4, 3: 2, 4: 6}[samples.shape[2]]
    assert np.array_equal(_decoded(data, depth, samples.shape[2]), samples)


def test_average_filter_matches_the_specification() -> None:
    """The vectorised filter equals the PNG specification's Average filter computed byte by
    byte with Python integers, at the top of an image and below a given row above."""
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 256, size=(5, 18), dtype=np.uint8)
    above = rng.integers(0, 256, size=18, dtype=np.uint8)
    for prior, bpp in ((np.zeros(18, np.uint8), 3), (above, 3), (above, 6), (above, 2)):
        out = np.empty_like(rows)
        png._average_filter(rows, prior, bpp, out)
        expected = np.empty_like(rows)
        for r in range(rows.shape[0]):
            up_row = prior if r == 0 else rows[r - 1]
            for i in range(rows.shape[1]):
                left = int(rows[r, i - bpp]) if i >= bpp else 0
                expected[r, i] = (int(rows[r, i]) - (left + int(up_row[i])) // 2) % 256
        assert np.array_equal(out, expected)


def test_large_images_split_the_data_into_several_idat_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compressed data over ``PNG_IDAT_BYTES`` goes into several IDAT chunks, which decoders
    (and srtool's own reader) join. A chunk is closed once it holds ``PNG_IDAT_BYTES``, so only
    the last may be shorter (how many there are depends on how the deflater hands out its
    output: ISA-L in pieces of tens of kilobytes)."""
    monkeypatch.setattr(png, "PNG_IDAT_BYTES", 4096)
    monkeypatch.setattr(png, "_ENCODE_ROWS", 8)
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"))
    data = png.encode_png(pixels)
    idat = [length for kind, length in _chunk_lengths(data) if kind == b"IDAT"]
    assert len(idat) >= 3
    assert all(length >= 4096 for length in idat[:-1]), idat
    assert np.array_equal(_decoded(data, 8, 3), pixels)
    assert np.array_equal(png._decode_png(data, None).pixels, pixels)


def test_icc_and_exif_chunks_come_before_the_image_data(tmp_path: Path) -> None:
    """iCCP and eXIf follow IHDR (the specification puts them before IDAT) and read back."""
    icc = Image.open(PHOTO).info.get("icc_profile") or _srgb_profile()
    exif = Image.Exif()
    exif[0x010F] = "srtool test camera"
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"))
    data = png.encode_png(pixels, None, icc, exif.tobytes())
    kinds = _chunks(data)
    assert kinds[:3] == [b"IHDR", b"iCCP", b"eXIf"] and kinds[-1] == b"IEND"
    (tmp_path / "meta.png").write_bytes(data)
    picture = read_image(tmp_path / "meta.png")
    assert picture.icc_profile == icc
    assert b"srtool test camera" in picture.exif


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_photo_files_stay_close_to_libpng_paeth_size() -> None:
    """The speed-first settings keep a real photo's file within 8 % of OpenCV's PNG with Paeth
    rows, zlib level 1 and run-length matching (measured: 1.6 %), and below raw size (this
    photo is noisy: 64 %)."""
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"))
    ours = len(png.encode_png(pixels))
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]
    ok, theirs = cv2.imencode(".png", np.ascontiguousarray(pixels[:, :, ::-1]), params)
    assert ok
    assert ours < 1.08 * len(theirs) and ours < 0.8 * pixels.nbytes


def test_a_deflate_failure_is_a_write_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deflater's own error type (ISA-L's and zlib-ng's are not a ``zlib.error``) becomes
    srtool's one-line ``ImageWriteError``, and nothing is left at the target."""
    from srtool.errors import ImageWriteError
    from srtool.imageio import Picture, write_image

    def failing(*args: object) -> None:
        raise png.DEFLATE_ERROR("Error -2 while compressing data")

    monkeypatch.setattr(png._deflate_lib, "compressobj", failing)
    with pytest.raises(ImageWriteError, match="cannot write PNG"):
        write_image(tmp_path / "out.png", Picture(np.zeros((4, 5, 3), np.uint8)))
    assert list(tmp_path.iterdir()) == []


def test_isal_deflates_where_it_has_wheels() -> None:
    """pyproject installs isal on x86-64 and Arm; there the encoder must be using it."""
    if platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"):
        pytest.skip(f"isal is not installed on {platform.machine()}")
    assert png._deflate_lib.__name__ == "isal.isal_zlib"


@pytest.mark.parametrize("depth", [8, 16])
def test_the_zlib_ng_fallback_writes_the_same_pixels(
    depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where isal has no wheel, zlib-ng deflates: the file decodes to the same pixels."""
    from zlib_ng import zlib_ng

    dtype = np.uint16 if depth == 16 else np.uint8
    pixels = np.random.default_rng(depth).integers(0, np.iinfo(dtype).max, (70, 33, 3), dtype)
    monkeypatch.setattr(png, "_deflate_lib", zlib_ng)
    data = png.encode_png(pixels)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert decoded.dtype == dtype and np.array_equal(decoded, pixels)
