"""srtool.imageio on real files written to tmp_path: round trips, conversions, metadata, errors,
atomic writes."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from srtool.atomic import atomic_output, atomic_write_bytes
from srtool.errors import ImageReadError, ImageWriteError, UsageError
from srtool.imageio import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_SUFFIXES,
    Picture,
    as_float,
    format_for_path,
    from_float,
    read_image,
    suffix_for_format,
    to_8bit,
    write_image,
)

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
RNG = np.random.default_rng(1234)


def smooth_rgb(height: int = 24, width: int = 32, dtype=np.uint8) -> np.ndarray:
    """A smooth colour gradient (lossy codecs reproduce it closely) plus a little texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width, y / height, (x + y) / (width + height)], axis=2)
    peak = np.iinfo(dtype).max
    return (img * peak * 0.9 + 0.05 * peak).astype(dtype)


def noise(shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None, make: str = "srtool-test") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def exif_tags(block: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(block)
    return exif


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".srtool-tmp-" in p.name]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp"])
def test_lossless_8bit_rgb_round_trip(tmp_path: Path, suffix: str) -> None:
    pixels = noise((17, 23, 3))
    out = tmp_path / f"rgb{suffix}"
    write_image(out, Picture(pixels))
    back = read_image(out)
    assert back.pixels.dtype == np.uint8 and back.bit_depth == 8 and back.alpha is None
    assert back.format == format_for_path(out)
    np.testing.assert_array_equal(back.pixels, pixels)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_lossy_8bit_rgb_round_trip_is_close(tmp_path: Path, fmt: str) -> None:
    pixels = smooth_rgb(48, 64)
    out = tmp_path / f"rgb{suffix_for_format(fmt)}"
    write_image(out, Picture(pixels))
    back = read_image(out)
    assert back.pixels.shape == pixels.shape and back.format == fmt
    error = np.abs(back.pixels.astype(int) - pixels.astype(int)).mean()
    assert error < 2.0, error


def test_webp_quality_100_is_lossless(tmp_path: Path) -> None:
    pixels, alpha = noise((9, 13, 3)), noise((9, 13))
    out = tmp_path / "lossless.webp"
    write_image(out, Picture(pixels, alpha), quality=100)
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, pixels)
    np.testing.assert_array_equal(back.alpha, alpha)


def test_jpeg_high_quality_uses_444_chroma(tmp_path: Path) -> None:
    out = tmp_path / "q.jpg"
    write_image(out, Picture(smooth_rgb()))
    with Image.open(out) as im:
        assert im.layer[0][1:3] == im.layer[1][1:3] == (1, 1)  # no chroma subsampling
    write_image(out, Picture(smooth_rgb()), quality=80)
    with Image.open(out) as im:
        assert im.layer[0][1:3] == (2, 2)  # 4:2:0 below 90


@pytest.mark.parametrize("fmt", ["png", "tiff"])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_16bit_rgb_round_trip_is_exact(tmp_path: Path, fmt: str, with_alpha: bool) -> None:
    pixels = noise((11, 19, 3), np.uint16)
    alpha = noise((11, 19), np.uint16) if with_alpha else None
    out = tmp_path / f"deep{suffix_for_format(fmt)}"
    write_image(out, Picture(pixels, alpha, bit_depth=16))
    back = read_image(out)
    assert back.bit_depth == 16 and back.pixels.dtype == np.uint16
    np.testing.assert_array_equal(back.pixels, pixels)
    if with_alpha:
        np.testing.assert_array_equal(back.alpha, alpha)
    else:
        assert back.alpha is None


def test_16bit_png_written_by_another_tool_reads_exact(tmp_path: Path) -> None:
    pixels = noise((7, 5, 3), np.uint16)
    out = tmp_path / "opencv.png"
    out.write_bytes(cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))[1].tobytes())
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, pixels)
    # Pillow alone would have given 8-bit samples: the header decides, not the library
    with Image.open(out) as im:
        assert np.asarray(im).dtype == np.uint8


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16bit_grey_round_trip(tmp_path: Path, fmt: str) -> None:
    pixels = noise((13, 8, 1), np.uint16)
    out = tmp_path / f"grey16{suffix_for_format(fmt)}"
    write_image(out, Picture(pixels, bit_depth=16))
    back = read_image(out)
    assert back.is_grey and back.bit_depth == 16 and back.pixels.shape == (13, 8, 1)
    np.testing.assert_array_equal(back.pixels, pixels)


def test_16bit_grey_alpha_png_round_trip(tmp_path: Path) -> None:
    pixels, alpha = noise((6, 9, 1), np.uint16), noise((6, 9), np.uint16)
    out = tmp_path / "ga16.png"
    write_image(out, Picture(pixels, alpha, bit_depth=16))
    back = read_image(out)
    assert back.is_grey and back.bit_depth == 16
    np.testing.assert_array_equal(back.pixels, pixels)
    np.testing.assert_array_equal(back.alpha, alpha)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp"])
def test_grey_stays_grey(tmp_path: Path, suffix: str) -> None:
    pixels = smooth_rgb()[:, :, :1]
    out = tmp_path / f"grey{suffix}"
    write_image(out, Picture(pixels))
    back = read_image(out)
    assert back.is_grey and back.pixels.shape == pixels.shape and back.bit_depth == 8
    assert np.abs(back.pixels.astype(int) - pixels.astype(int)).max() <= 2


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_rgba_alpha_kept(tmp_path: Path, suffix: str) -> None:
    pixels, alpha = noise((10, 12, 3)), noise((10, 12))
    out = tmp_path / f"rgba{suffix}"
    write_image(out, Picture(pixels, alpha))
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, pixels)
    np.testing.assert_array_equal(back.alpha, alpha)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_alpha_dropped_with_warning_where_format_has_none(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / f"flat{suffix}"
    with caplog.at_level("WARNING", logger="srtool"):
        write_image(out, Picture(smooth_rgb(), noise(smooth_rgb().shape[:2])))
    assert "alpha dropped" in caplog.text
    back = read_image(out)
    assert back.alpha is None and back.channels == 3


def test_16bit_to_8bit_format_rounds(tmp_path: Path) -> None:
    values = np.arange(0, 65536, 7, dtype=np.uint16)[: 64 * 64].reshape(64, 64, 1)
    out = tmp_path / "rounded.bmp"
    write_image(out, Picture(values, bit_depth=16))
    back = read_image(out)
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert back.bit_depth == 8
    np.testing.assert_array_equal(back.pixels, expected)
    np.testing.assert_array_equal(to_8bit(values), expected)


# --------------------------------------------------------------------------- conversions on read


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    index = noise((8, 8)) % 4
    image = Image.fromarray(index.astype(np.uint8), mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    out = tmp_path / "palette.png"
    image.save(out, transparency=bytes([255, 0, 255, 128]))
    back = read_image(out)
    assert back.channels == 3 and back.alpha is not None
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    np.testing.assert_array_equal(back.pixels, palette[index])
    np.testing.assert_array_equal(back.alpha, np.array([255, 0, 255, 128], np.uint8)[index])


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    out = tmp_path / "palette.bmp"
    Image.fromarray(smooth_rgb()).quantize(16).save(out)
    back = read_image(out)
    assert back.channels == 3 and back.alpha is None


def test_la_becomes_grey_plus_alpha(tmp_path: Path) -> None:
    la = noise((7, 9, 2))
    out = tmp_path / "la.png"
    Image.fromarray(la).save(out)  # mode LA
    back = read_image(out)
    assert back.is_grey
    np.testing.assert_array_equal(back.pixels[:, :, 0], la[:, :, 0])
    np.testing.assert_array_equal(back.alpha, la[:, :, 1])


def test_grey_alpha_8bit_round_trip(tmp_path: Path) -> None:
    pixels, alpha = noise((5, 6, 1)), noise((5, 6))
    write_image(tmp_path / "la.png", Picture(pixels, alpha))
    back = read_image(tmp_path / "la.png")
    assert back.is_grey
    np.testing.assert_array_equal(back.pixels, pixels)
    np.testing.assert_array_equal(back.alpha, alpha)


def test_16bit_grey_alpha_tiff_written_as_rgba(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pixels, alpha = noise((5, 6, 1), np.uint16), noise((5, 6), np.uint16)
    with caplog.at_level("WARNING", logger="srtool"):
        write_image(tmp_path / "ga.tif", Picture(pixels, alpha, bit_depth=16))
    assert "RGBA" in caplog.text
    back = read_image(tmp_path / "ga.tif")
    np.testing.assert_array_equal(back.pixels, np.repeat(pixels, 3, axis=2))
    np.testing.assert_array_equal(back.alpha, alpha)


def test_colour_key_transparency_becomes_alpha(tmp_path: Path) -> None:
    pixels = noise((6, 6, 3)) // 2
    pixels[2, 3] = (200, 201, 202)
    out = tmp_path / "trns.png"
    Image.fromarray(pixels).save(out, transparency=(200, 201, 202))
    back = read_image(out)
    expected = np.full((6, 6), 255, np.uint8)
    expected[2, 3] = 0
    np.testing.assert_array_equal(back.alpha, expected)


def test_bilevel_becomes_grey(tmp_path: Path) -> None:
    out = tmp_path / "mono.png"
    Image.fromarray(noise((5, 8)) > 127).save(out)  # mode 1
    back = read_image(out)
    assert back.is_grey and set(np.unique(back.pixels)) <= {0, 255}


def test_cmyk_jpeg_without_profile_matches_plain_conversion(tmp_path: Path) -> None:
    cmyk = Image.fromarray(noise((8, 10, 4)), mode="CMYK")
    out = tmp_path / "cmyk.jpg"
    cmyk.save(out, quality=95)
    back = read_image(out)
    with Image.open(out) as im:
        expected = np.asarray(im.convert("RGB"))
    assert back.channels == 3 and back.alpha is None and back.icc_profile is None
    np.testing.assert_array_equal(back.pixels, expected)


def _cmyk_to_grey_profile() -> bytes:
    """A minimal ICC v2 input profile (CMYK -> Lab) whose A2B0 table maps every ink mix to one
    neutral colour: a uniform result from random inks proves the profile was applied."""

    def tag_text(kind: bytes, text: bytes) -> bytes:
        return kind + b"\0" * 4 + text + b"\0"

    desc = (
        b"desc" + b"\0" * 4 + struct.pack(">I", 5) + b"test\0" + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    )
    wtpt = b"XYZ " + b"\0" * 4 + struct.pack(">iii", 63190, 65536, 54061)
    lut = b"mft1" + b"\0" * 4 + bytes([4, 3, 2, 0])
    lut += b"".join(struct.pack(">i", 65536 if i % 4 == 0 else 0) for i in range(9))
    lut += bytes(range(256)) * 4 + bytes([128, 128, 128]) * 16 + bytes(range(256)) * 3
    tags = [(b"desc", desc), (b"cprt", tag_text(b"text", b"none")), (b"wtpt", wtpt), (b"A2B0", lut)]
    offset = 128 + 4 + 12 * len(tags)
    table, blobs = b"", b""
    for sig, blob in tags:
        blob += b"\0" * (-len(blob) % 4)
        table += sig + struct.pack(">II", offset + len(blobs), len(blob))
        blobs += blob
    size = offset + len(blobs)
    header = struct.pack(">I4sI4s4s4s", size, b"\0" * 4, 0x02100000, b"scnr", b"CMYK", b"Lab ")
    header += b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">iii", 63190, 65536, 54061)
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + blobs


def test_cmyk_jpeg_with_profile_goes_through_it(tmp_path: Path) -> None:
    cmyk = Image.fromarray(noise((8, 10, 4)), mode="CMYK")
    out = tmp_path / "cmyk-profile.jpg"
    cmyk.save(out, quality=95, icc_profile=_cmyk_to_grey_profile())
    back = read_image(out)
    assert back.icc_profile is None  # converted to sRGB
    assert (back.pixels == back.pixels[0, 0]).all()  # every ink mix -> the profile's one colour
    with Image.open(out) as im:
        plain = np.asarray(im.convert("RGB"))
    assert np.unique(plain.reshape(-1, 3), axis=0).shape[0] > 10  # what ignoring it would give


# --------------------------------------------------------------------------- EXIF and ICC


def test_exif_orientation_6_jpeg_is_rotated_and_reset(tmp_path: Path) -> None:
    pixels = smooth_rgb(16, 40)
    out = tmp_path / "portrait.jpg"
    Image.fromarray(pixels).save(out, quality=95, exif=exif_bytes(6))
    back = read_image(out)
    assert back.pixels.shape == (40, 16, 3)  # rotated 90 degrees clockwise
    with Image.open(out) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(back.pixels, expected)
    tags = exif_tags(back.exif)
    assert tags[0x0112] == 1 and tags[0x010F] == "srtool-test"
    # written again, the file is upright for every viewer
    again = tmp_path / "again.jpg"
    write_image(again, back)
    assert read_image(again).pixels.shape == (40, 16, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    pixels, alpha = noise((5, 7, 3)), noise((5, 7))
    out = tmp_path / "o.png"
    Image.fromarray(np.dstack((pixels, alpha))).save(out, exif=exif_bytes(orientation))
    back = read_image(out)
    with Image.open(out) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(back.pixels, expected[:, :, :3])
    np.testing.assert_array_equal(back.alpha, expected[:, :, 3])
    assert exif_tags(back.exif)[0x0112] == 1


@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_tiff_orientation_tag_applied_once(tmp_path: Path, compression: str | None) -> None:
    pixels = noise((4, 9, 3))
    out = tmp_path / "rot.tif"
    tiffinfo = {0x0112: 6, 0x010F: "ScanCo"}
    Image.fromarray(pixels).save(out, tiffinfo=tiffinfo, compression=compression)
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, np.rot90(pixels, -1))
    tags = exif_tags(back.exif)
    assert tags[0x0112] == 1 and tags[0x010F] == "ScanCo"
    assert 273 not in tags  # the TIFF's own layout tags are not passed on as EXIF


def test_orientation_applied_to_16bit_png(tmp_path: Path) -> None:
    pixels = noise((4, 9, 3), np.uint16)
    write_image(tmp_path / "plain.png", Picture(pixels, bit_depth=16, exif=exif_bytes()))
    # set orientation 8 in the written file's eXIf chunk
    data = (tmp_path / "plain.png").read_bytes()
    rotated_exif = exif_bytes(8)[6:]
    start = data.index(b"eXIf") - 4
    (length,) = struct.unpack_from(">I", data, start)
    chunk = struct.pack(">I", len(rotated_exif)) + b"eXIf" + rotated_exif
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + rotated_exif))
    (tmp_path / "rot.png").write_bytes(data[:start] + chunk + data[start + 12 + length :])
    back = read_image(tmp_path / "rot.png")
    np.testing.assert_array_equal(back.pixels, np.rot90(pixels, 1))
    assert back.bit_depth == 16 and exif_tags(back.exif)[0x0112] == 1


def test_orientation_applied_to_16bit_tiff(tmp_path: Path) -> None:
    pixels = noise((4, 9, 3), np.uint16)
    path = tmp_path / "rot16.tif"
    write_image(path, Picture(pixels, bit_depth=16, exif=exif_bytes()))
    data = bytearray(path.read_bytes())
    (first,) = struct.unpack_from("<I", data, 4)  # OpenCV writes little-endian TIFF
    (count,) = struct.unpack_from("<H", data, first)
    for entry in range(first + 2, first + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == 0x0112:
            struct.pack_into("<H", data, entry + 8, 6)
    path.write_bytes(bytes(data))
    back = read_image(path)
    np.testing.assert_array_equal(back.pixels, np.rot90(pixels, -1))
    assert back.bit_depth == 16 and exif_tags(back.exif)[0x0112] == 1


@pytest.mark.parametrize(
    ("suffix", "dtype"),
    [
        (".png", np.uint8),
        (".jpg", np.uint8),
        (".webp", np.uint8),
        (".tif", np.uint8),
        (".png", np.uint16),
        (".tif", np.uint16),
    ],
)
def test_icc_and_exif_survive_writes(tmp_path: Path, suffix: str, dtype) -> None:
    icc = srgb_icc()
    out = tmp_path / f"meta{suffix}"
    bits = 16 if dtype == np.uint16 else 8
    write_image(
        out,
        Picture(
            smooth_rgb(dtype=dtype),
            bit_depth=bits,
            icc_profile=icc,
            exif=exif_bytes(make="CameraCo"),
        ),
    )
    back = read_image(out)
    assert back.icc_profile == icc
    assert exif_tags(back.exif)[0x010F] == "CameraCo"
    with Image.open(out) as im:  # other software sees them too
        assert im.info.get("icc_profile") == icc
        assert im.getexif()[0x010F] == "CameraCo"


def test_icc_kept_on_read_of_sample_photo() -> None:
    picture = read_image(PHOTOS / "astronaut.png")
    with Image.open(PHOTOS / "astronaut.png") as im:
        assert picture.icc_profile == im.info["icc_profile"]


# --------------------------------------------------------------------------- bad input


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png.*empty file"):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("cut.png", lambda p: Image.fromarray(noise((64, 64, 3))).save(p)),
        ("cut.jpg", lambda p: Image.fromarray(noise((64, 64, 3))).save(p, quality=90)),
        ("cut16.png", lambda p: write_image(p, Picture(noise((64, 64, 3), np.uint16)))),
        ("cut.webp", lambda p: Image.fromarray(noise((64, 64, 3))).save(p)),
        ("cut.tif", lambda p: Image.fromarray(noise((64, 64, 3))).save(p)),
        ("cut.bmp", lambda p: Image.fromarray(noise((64, 64, 3))).save(p)),
    ],
)
def test_truncated_file(tmp_path: Path, name: str, make) -> None:
    path = tmp_path / name
    make(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match=name.replace(".", r"\.")) as info:
        read_image(path)
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)
    assert "\n" not in str(info.value)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageReadError, match=r"notes\.png.*text file"):
        read_image(path)


def test_unsupported_format_named(tmp_path: Path) -> None:
    path = tmp_path / "layers.png"
    path.write_bytes(b"8BPS\x00\x01" + bytes(64))
    with pytest.raises(ImageReadError, match=r"layers\.png.*Photoshop"):
        read_image(path)


def test_gif_with_a_lying_suffix_is_read_as_gif(tmp_path: Path) -> None:
    path = tmp_path / "anim.png"
    Image.fromarray(noise((4, 4, 3))).save(path, format="GIF")
    picture = read_image(path)
    assert picture.format == "gif" and picture.pixels.shape == (4, 4, 3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"gone\.png.*no such file"):
        read_image(tmp_path / "gone.png")


def test_float_tiff_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "hdr.tif"
    Image.fromarray(np.ones((4, 4), np.float32)).save(path)
    with pytest.raises(ImageReadError, match=r"hdr\.tif.*floating-point"):
        read_image(path)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG header claiming a huge size over a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    idat = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_from_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bomb(30000, 30000))  # 900 MP declared, 2 KB on disk
    with pytest.raises(ImageReadError, match=r"bomb\.png.*30000x30000.*over the limit"):
        read_image(path)
    assert DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp"])
def test_pixel_limit_checked_for_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"big{suffix}"
    write_image(path, Picture(smooth_rgb(40, 50)))
    with pytest.raises(ImageReadError, match=rf"big\{suffix}.*50x40.*over the limit"):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).pixels.shape == (40, 50, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp", ".bmp"])
def test_pillow_global_limit_does_not_warn(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"large{suffix}"
    write_image(path, Picture(smooth_rgb(40, 50)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # Pillow would warn for 2000 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path, max_pixels=None).pixels.shape == (40, 50, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_max_pixels_is_the_only_limit(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"large{suffix}"
    write_image(path, Picture(smooth_rgb(40, 50)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse 2000 pixels
    assert read_image(path, max_pixels=None).pixels.shape == (40, 50, 3)


@pytest.mark.parametrize("suffix", [".tif", ".webp"])
def test_pillow_hard_limit_becomes_one_line_error(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TIFF and WebP decoders re-check Pillow's own hard limit (2 x MAX_IMAGE_PIXELS, 179 MP by
    # default) while decoding; above it they fail with a read error, never a traceback
    path = tmp_path / f"large{suffix}"
    write_image(path, Picture(smooth_rgb(40, 50)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match=rf"large\{suffix}: .*exceeds limit"):
        read_image(path, max_pixels=None)


# --------------------------------------------------------------------------- writing safely


def _interrupting_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Pillow's encoder write part of the file and then be interrupted (Ctrl-C)."""

    def interrupted(im, fp, tile, bufsize=0):
        fp.write(b"\x89PNG partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ImageFile, "_save", interrupted)


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupting_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "out.jpg", Picture(smooth_rgb()))  # a format Pillow encodes
    assert list(tmp_path.iterdir()) == []


def _cut_writes(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make every file opened for writing under ``folder`` take half of its first write and then
    be interrupted (Ctrl-C): the path of encoders that hand srtool finished bytes (PNG)."""
    import builtins

    real_open = builtins.open

    class _Cut:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    def cut_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return _Cut(handle) if "w" in mode and str(file).startswith(str(folder)) else handle

    monkeypatch.setattr(builtins, "open", cut_open)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])  # Pillow's encoder; OpenCV's bytes
def test_interrupted_overwrite_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    target = tmp_path / f"out{suffix}"
    write_image(target, Picture(smooth_rgb()))
    before = target.read_bytes()
    if suffix == ".jpg":
        _interrupting_save(monkeypatch)
    else:
        _cut_writes(monkeypatch, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, Picture(noise((24, 32, 3))))
    monkeypatch.undo()
    assert target.read_bytes() == before and no_temp_files(tmp_path)


@pytest.mark.parametrize(
    ("name", "shape"), [("wide.jpg", (1, 70000, 3)), ("wide.webp", (1, 20000, 3))]
)
def test_encoder_failure_leaves_nothing(tmp_path: Path, name: str, shape) -> None:
    with pytest.raises(ImageWriteError, match=name.replace(".", r"\.")):
        write_image(tmp_path / name, Picture(np.zeros(shape, np.uint8)))
    assert list(tmp_path.iterdir()) == []


def test_writes_leave_no_temp_files_and_normal_permissions(tmp_path: Path) -> None:
    for suffix in sorted(SUPPORTED_SUFFIXES):
        write_image(tmp_path / f"x{suffix}", Picture(smooth_rgb()))
    write_image(tmp_path / "deep.png", Picture(noise((4, 4, 3), np.uint16), bit_depth=16))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"x{s}" for s in SUPPORTED_SUFFIXES] + ["deep.png"])
    mode = (tmp_path / "x.png").stat().st_mode & 0o777
    (tmp_path / "plain").write_bytes(b"")
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777  # umask decides, as for any file


def test_atomic_helpers(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    atomic_write_bytes(target, b"first")
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".model.onnx.srtool-tmp-")
        assert temp.suffix == ".onnx"
        temp.write_bytes(b"second")
        assert target.read_bytes() == b"first"
    assert target.read_bytes() == b"second"
    with pytest.raises(RuntimeError), atomic_output(target) as temp:
        temp.write_bytes(b"third")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"second" and no_temp_files(tmp_path)


def test_write_to_missing_folder_is_a_write_error(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="nowhere"):
        write_image(tmp_path / "nowhere" / "x.png", Picture(smooth_rgb()))


def test_explicit_format_overrides_suffix(tmp_path: Path) -> None:
    out = tmp_path / "looks-like.png"
    write_image(out, Picture(smooth_rgb()), format="jpg")
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert read_image(out).format == "jpeg"  # decided by content, not by name


# --------------------------------------------------------------------------- helpers


def test_format_and_suffix_helpers() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"} <= set(SUPPORTED_SUFFIXES)
    assert format_for_path("a/B.JPG") == "jpeg" and format_for_path("x.tif") == "tiff"
    assert suffix_for_format("jpeg") == ".jpg" and suffix_for_format("jpg") == ".jpg"
    assert suffix_for_format("tif") == ".tiff"
    assert format_for_path("anim.gif") == "gif" and format_for_path("IMG.HEIC") == "heic"
    assert format_for_path("a.heif") == "heic" and format_for_path("a.avif") == "avif"
    assert suffix_for_format("heif") == ".heic" and suffix_for_format("avif") == ".avif"
    with pytest.raises(UsageError, match=r"\.psd"):
        format_for_path("layers.psd")
    with pytest.raises(UsageError):
        suffix_for_format("psd")


@pytest.mark.parametrize(("dtype", "bits"), [(np.uint8, 8), (np.uint16, 16)])
def test_float_conversion_round_trips_every_value(dtype, bits: int) -> None:
    values = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    floats = as_float(values)
    assert floats.dtype == np.float32 and floats.min() == 0.0 and floats.max() == 1.0
    np.testing.assert_array_equal(from_float(floats, bits), values)


def test_from_float_clips_and_rounds() -> None:
    got = from_float(np.array([-0.5, 0.0, 0.5 / 255, 0.49 / 255, 1.0, 7.0, np.nan]), 8)
    np.testing.assert_array_equal(got, [0, 0, 1, 0, 255, 255, 0])


def test_arrays_are_read_only(tmp_path: Path) -> None:
    out = tmp_path / "ro.png"
    write_image(out, Picture(noise((4, 4, 3)), noise((4, 4))))
    picture = read_image(out)
    assert not picture.pixels.flags.writeable and not picture.alpha.flags.writeable


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("astronaut.png", (512, 512, 3)),
        ("coffee.png", (400, 600, 3)),
        ("chelsea.png", (300, 451, 3)),
    ],
)
def test_sample_photos_readable(name: str, shape) -> None:
    picture = read_image(PHOTOS / name)
    assert picture.pixels.shape == shape and picture.bit_depth == 8 and picture.format == "png"
    assert picture.megapixels == pytest.approx(shape[0] * shape[1] / 1e6)
    assert 40 < picture.pixels.mean() < 215  # a real photo, not a blank file
