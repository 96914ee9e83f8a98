"""HEIC/HEIF and AVIF photos, animated GIF/WebP/APNG frame by frame, files left out of a folder
named in the summary, and OUTPUT file names: through the CLI with a tiny real ONNX model, on files
the libraries write in the test."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from srtool.cli import app
from srtool.errors import ImageReadError
from srtool.imageio import (
    Animation,
    AnimationReader,
    Picture,
    read_image,
    read_media,
    write_animation,
    write_image,
)

runner = CliRunner()

FRAMES = 3
DURATIONS = [100, 200, 300]  # GIF stores centiseconds: multiples of 10 ms survive exactly
LOOP = 2


def run(*args: str):
    return runner.invoke(app, ["upscale", *args])


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_profile() -> bytes:
    return _SRGB  # made once: each profile made carries its creation time


def camera_exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "Model 9"  # Model
    exif[0x0112] = orientation
    return exif.tobytes()  # starts with b"Exif\0\0"


def photo(height: int = 24, width: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack((x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)))


def make_frames(height: int = 20, width: int = 24) -> list[Image.Image]:
    """Three different RGBA frames; the top-left 6x6 is transparent in each."""
    frames = []
    for i in range(FRAMES):
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[..., i] = 220
        rgba[..., 3] = 255
        rgba[:6, :6, 3] = 0
        frames.append(Image.fromarray(rgba, "RGBA"))
    return frames


def save_animation(path: Path, fmt: str) -> Path:
    frames = make_frames()
    params: dict[str, object] = {
        "save_all": True,
        "append_images": frames[1:],
        "duration": DURATIONS,
        "loop": LOOP,
    }
    if fmt == "GIF":
        params["disposal"] = 2
    if fmt == "WEBP":
        params["lossless"] = True
    frames[0].save(path, format=fmt, **params)
    return path


# --------------------------------------------------------------------------- HEIC and AVIF


def test_heic_ten_bit_round_trip_keeps_exif_icc(tmp_path: Path) -> None:
    rgb16 = (photo().astype(np.uint16) * 257).astype(np.uint16)
    path = tmp_path / "photo.heic"
    write_image(path, Picture(rgb16, None, 16, "heic", srgb_profile(), camera_exif()))
    assert path.read_bytes()[4:8] == b"ftyp"
    picture = read_image(path)
    assert picture.format == "heic" and picture.bit_depth == 16
    assert picture.pixels.dtype == np.uint16 and picture.pixels.shape == (24, 32, 3)
    assert picture.icc_profile == srgb_profile()
    assert picture.exif is not None and b"TestCam" in picture.exif
    error = np.abs(picture.pixels.astype(int) - rgb16.astype(int)).mean()
    assert error < 2500  # lossy, 10-bit: close, not exact


def test_avif_with_alpha_keeps_exif_icc(tmp_path: Path) -> None:
    alpha = np.full((24, 32), 255, np.uint8)
    alpha[:, :8] = 0
    path = tmp_path / "photo.avif"
    picture = Picture(photo().astype(np.uint8), alpha, 8, "avif", srgb_profile(), camera_exif())
    write_image(path, picture)
    back = read_image(path)
    assert back.format == "avif" and back.pixels.dtype == np.uint8
    assert back.alpha is not None and back.alpha[:, :6].max() < 20
    assert back.icc_profile == srgb_profile()
    assert back.exif is not None and b"TestCam" in back.exif


def test_heic_avif_pixel_limit_checked_from_header(tmp_path: Path) -> None:
    for suffix in (".heic", ".avif"):
        path = tmp_path / f"big{suffix}"
        write_image(path, Picture(photo().astype(np.uint8)))
        with pytest.raises(ImageReadError, match=r"32x24 = .* over the limit"):
            read_image(path, max_pixels=500)
        truncated = tmp_path / f"cut{suffix}"
        truncated.write_bytes(path.read_bytes()[:200])
        with pytest.raises(ImageReadError, match=r"cut"):
            read_image(truncated)


def test_cli_heic_and_avif_photos(tmp_path: Path, tiny_model_x2: Path) -> None:
    src = tmp_path / "iphone"
    src.mkdir()
    write_image(
        src / "IMG_0001.HEIC",
        Picture(photo().astype(np.uint8), None, 8, "heic", srgb_profile(), camera_exif()),
    )
    Image.fromarray(photo().astype(np.uint8)).save(  # a camera's rotation flag (90 degrees)
        src / "pic.avif", exif=camera_exif(6), icc_profile=srgb_profile()
    )
    out = tmp_path / "out"
    result = run(str(src), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped, 0 failed" in result.output
    heic = read_image(out / "IMG_0001.HEIC")
    assert heic.format == "heic" and (heic.width, heic.height) == (64, 48)
    assert heic.icc_profile == srgb_profile() and b"TestCam" in (heic.exif or b"")
    avif = read_image(out / "pic.avif")
    # orientation 6 was applied on read (upright 24x32 -> 48x64) and reset to 1 in the output
    assert avif.format == "avif" and (avif.width, avif.height) == (48, 64)
    assert avif.icc_profile == srgb_profile() and b"TestCam" in (avif.exif or b"")
    with Image.open(out / "pic.avif") as written:  # upright: no rotation left to apply
        assert written.getexif().get(0x0112, 1) == 1
    # and out again to other formats, and from JPEG into HEIC
    result = run(str(src / "IMG_0001.HEIC"), str(tmp_path / "x.jpg"), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "x.jpg").size == (64, 48)
    result = run(
        str(tmp_path / "x.jpg"), str(tmp_path / "y"), "--model", str(tiny_model_x2), "-f", "heic"
    )
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "y" / "x.heic").width == 128


# --------------------------------------------------------------------------- animations


def check_animation(path: Path, fmt: str, size: tuple[int, int]) -> None:
    media = read_media(path)
    assert isinstance(media, AnimationReader), path
    assert media.format == fmt and media.frame_count == FRAMES and media.loop == LOOP
    assert (media.width, media.height) == size
    frames = list(media)
    assert [duration for _, duration in frames] == DURATIONS
    for index, (frame, _) in enumerate(frames):
        assert frame.alpha is not None, (path, index)
        height, width = frame.alpha.shape
        # the transparent corner (6x6 scaled) stays transparent, the rest opaque
        assert frame.alpha[: height * 4 // 20, : width * 4 // 24].max() < 128
        assert frame.alpha[height // 2 :, width // 2 :].min() > 127
        # each frame keeps its own colour: frame i is mostly channel i
        centre = frame.pixels[height // 2 :, width // 2 :].reshape(-1, 3).mean(axis=0)
        assert int(np.argmax(centre)) == index, (path, index, centre)


@pytest.mark.parametrize(
    ("name", "pil_format", "fmt"),
    [("anim.gif", "GIF", "gif"), ("anim.webp", "WEBP", "webp"), ("anim.png", "PNG", "png")],
)
def test_cli_animation_frame_by_frame(
    tmp_path: Path, tiny_model_x2: Path, name: str, pil_format: str, fmt: str
) -> None:
    src = save_animation(tmp_path / name, pil_format)
    check_animation(src, fmt, (24, 20))
    out = tmp_path / "out"
    started = time.perf_counter()
    result = run(str(src), str(out), "--model", str(tiny_model_x2), "--alpha", "resize")
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert "1 done, 0 skipped, 0 failed" in result.output
    check_animation(out / name, fmt, (48, 40))
    assert seconds < 60


def test_animation_converted_between_formats_and_refused_for_stills(
    tmp_path: Path, tiny_model_x2: Path
) -> None:
    src = save_animation(tmp_path / "anim.gif", "GIF")
    out = tmp_path / "out"
    result = run(str(src), str(out / "a.webp"), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    check_animation(out / "a.webp", "webp", (48, 40))
    result = run(str(src), str(out), "--model", str(tiny_model_x2), "--format", "jpg")
    assert result.exit_code == 1
    assert "cannot be written as JPEG" in result.output and not (out / "anim.jpg").exists()


def test_single_frame_gif_is_a_still(tmp_path: Path, tiny_model_x2: Path) -> None:
    path = tmp_path / "still.gif"
    make_frames()[0].save(path)
    media = read_media(path)
    assert isinstance(media, Picture) and media.alpha is not None
    result = run(str(path), str(tmp_path / "out"), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "still.gif") as image:
        assert image.size == (48, 40) and getattr(image, "n_frames", 1) == 1


def test_animation_limits(tmp_path: Path) -> None:
    src = save_animation(tmp_path / "anim.webp", "WEBP")
    with pytest.raises(ImageReadError, match="over the limit"):
        read_media(src, max_pixels=400)  # one 24x20 frame is 480 pixels
    with pytest.raises(ImageReadError, match="animation limit"):
        read_media(src, max_pixels=4 * 1000)  # 3 x 480 pixels > 1000
    assert isinstance(read_media(src, max_pixels=4 * 1440), AnimationReader)


def test_write_animation_refuses_still_formats(tmp_path: Path) -> None:
    frame = Picture(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(Exception, match="cannot store an animation"):
        write_animation(tmp_path / "a.jpg", Animation([frame, frame], [10, 10], 0, "gif"))


# --------------------------------------------------------------------------- the batch's edges


def test_left_out_files_counted_and_named(tmp_path: Path, tiny_model_x2: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(photo().astype(np.uint8)).save(src / "a.png")
    for name in ("layers.psd", "more.psd", "notes.txt", "README"):
        (src / name).write_bytes(b"x")
    (src / ".DS_Store").write_bytes(b"x")
    (src / "Thumbs.db").write_bytes(b"x")
    out = tmp_path / "out"
    result = run(str(src), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "2 skipped: unsupported format .psd" in lines
    assert "1 skipped: unsupported format .txt" in lines
    assert "1 skipped: unsupported format (no suffix)" in lines
    assert "1 done, 4 skipped, 0 failed" in lines[-1]
    assert "DS_Store" not in result.output and "Thumbs" not in result.output
    result = run(str(src), str(out), "--model", str(tiny_model_x2), "--verbose", "--ext", "gif")
    assert result.exit_code == 2  # nothing to do, and the message says what was there
    assert "no supported images" in result.output and ".psd" in result.output
    result = run(str(src), str(out), "--model", str(tiny_model_x2), "--verbose")
    assert "2 skipped: unsupported format .psd: layers.psd, more.psd" in result.output


def test_output_file_suffixes(tmp_path: Path, tiny_model_x2: Path) -> None:
    src = tmp_path / "holiday.jpg"
    Image.fromarray(photo().astype(np.uint8)).save(src)
    result = run(str(src), str(tmp_path / "out" / "holiday.gif"), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "holiday.gif").is_file()
    with Image.open(tmp_path / "out" / "holiday.gif") as image:
        assert image.format == "GIF" and image.size == (64, 48)
    result = run(str(src), str(tmp_path / "out" / "holiday.xyz"), "--model", str(tiny_model_x2))
    assert result.exit_code == 2
    assert ".xyz is not an image or video type" in result.output
    assert not (tmp_path / "out" / "holiday.xyz").exists()
