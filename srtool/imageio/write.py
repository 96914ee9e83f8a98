""":func:`write_image`: pick the format, validate the arrays, reduce them to what the format can
store (8 bits, no alpha), then encode: PNG with srtool's own encoder (:mod:`.png`), 16-bit TIFF
with OpenCV plus srtool's own metadata insertion (:mod:`.tiff`), everything else with Pillow.

Nothing is half-written: every write goes to a hidden temporary file in the destination folder
that is fsynced and renamed over the target (:func:`srtool.atomic.atomic_output`).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from srtool.atomic import atomic_output, atomic_write_bytes
from srtool.errors import ImageWriteError, UsageError, first_line
from srtool.imageio.animation import Animation, encode_animation, gif_frame
from srtool.imageio.decode import _Bad
from srtool.imageio.exif import _normalise_exif
from srtool.imageio.formats import (
    _ALPHA_FORMATS,
    _EIGHT_BIT_FORMATS,
    ANIMATION_FORMATS,
    DEFAULT_QUALITY,
    _normalise_format,
    format_for_path,
)
from srtool.imageio.heif import _avif_image, _write_heif
from srtool.imageio.opencv import _cv2
from srtool.imageio.picture import Picture, to_8bit
from srtool.imageio.png import DEFLATE_ERROR, encode_png
from srtool.imageio.quiet import _quiet_stderr
from srtool.imageio.tiff import _tiff_with_metadata

log = logging.getLogger("srtool")

_ENCODE_ERRORS = (OSError, ValueError, TypeError, KeyError, struct.error, zlib.error, DEFLATE_ERROR)
"""What encoders raise for a file they cannot write (the PNG deflater's error is not a
``zlib.error``); each becomes one :class:`ImageWriteError` line."""


def write_image(
    path: str | os.PathLike[str],
    picture: Picture,
    *,
    format: str | None = None,
    quality: int | None = None,
) -> None:
    """Encode ``picture`` to ``path`` atomically; raises :class:`ImageWriteError`.

    The format comes from ``format`` ("png", "jpeg"/"jpg", "webp", "tiff"/"tif", "bmp") or the
    path's suffix. The sample depth follows the arrays' dtype: PNG and TIFF keep 16 bits; JPEG,
    WebP and BMP are 8-bit formats and get 16-bit samples rounded to 8. Alpha is kept in PNG, WebP
    and TIFF and dropped (with a logged warning) for JPEG and BMP (BMP also carries no ICC/EXIF).
    ICC profile and EXIF (orientation 1) are written to PNG, JPEG, WebP and TIFF at any depth.
    PNG is written by :func:`~srtool.imageio.png.encode_png` at any depth and channel count.
    16-bit colour TIFF is encoded by OpenCV (Pillow has no such mode) and srtool inserts the ICC,
    EXIF and GPS tags itself. A 16-bit TIFF keeps
    its pixels and alpha exactly (LZW), the ICC profile, the descriptive EXIF tags (make, model,
    date, artist, copyright...) and the Exif and GPS directories; XMP, IPTC and private TIFF tags
    are not part of a Picture and are not written. WebP has no grey mode: grey becomes RGB.
    ``quality`` (1-100, default 95) applies to JPEG and WebP (WebP 100 = lossless); JPEG at
    quality >= 90 uses 4:4:4 chroma.
    """
    path = Path(path)
    fmt = _normalise_format(format) if format else format_for_path(path)
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")
    pixels, alpha = _validated(picture, path)
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        log.warning("%s: %s cannot store transparency; alpha dropped", path.name, fmt.upper())
        alpha = None
    if fmt in _EIGHT_BIT_FORMATS:
        pixels = to_8bit(pixels)
        alpha = None if alpha is None else to_8bit(alpha)
    icc = picture.icc_profile if _icc_fits(picture.icc_profile, pixels.shape[2], fmt) else None
    if picture.icc_profile and icc is None:
        log.debug("%s: ICC profile does not match the output colour space; not written", path)
    exif = _exif_for_write(picture.exif)
    try:
        if fmt == "heic":
            q = DEFAULT_QUALITY if quality is None else quality
            atomic_write_bytes(path, _write_heif(path, pixels, alpha, icc, exif, q))
        elif fmt == "png":
            atomic_write_bytes(path, encode_png(pixels, alpha, icc, exif))
        elif pixels.dtype == np.uint16 and (pixels.shape[2] == 3 or alpha is not None):
            _write_tiff16(path, pixels, alpha, icc, exif)
        else:
            _write_pillow(path, fmt, pixels, alpha, icc, exif, quality)
    except ImageWriteError:
        raise
    except _ENCODE_ERRORS as exc:
        raise ImageWriteError(f"{path}: cannot write {fmt.upper()} ({first_line(exc)})") from None


def write_animation(
    path: str | os.PathLike[str],
    animation: Animation,
    *,
    format: str | None = None,
    quality: int | None = None,
) -> None:
    """Encode an :class:`Animation` atomically as an animated GIF, WebP or PNG (APNG), from
    ``format`` or the path's suffix; raises :class:`ImageWriteError` (also for a format that
    cannot hold an animation)."""
    path = Path(path)
    fmt = _normalise_format(format) if format else format_for_path(path)
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")
    if fmt not in ANIMATION_FORMATS:
        raise ImageWriteError(
            f"{path}: {fmt.upper()} cannot store an animation (GIF, WebP and PNG can)"
        )
    if not animation.frames:
        raise ImageWriteError(f"{path}: an animation without frames")
    animation = Animation(
        animation.frames, animation.durations, animation.loop, fmt, animation.icc_profile
    )
    try:
        with _quiet_stderr():
            encoded = encode_animation(
                animation, quality=DEFAULT_QUALITY if quality is None else quality
            )
        atomic_write_bytes(path, encoded)
    except ImageWriteError:
        raise
    except (_Bad, *_ENCODE_ERRORS) as exc:
        raise ImageWriteError(f"{path}: cannot write {fmt.upper()} ({first_line(exc)})") from None


def _validated(picture: Picture, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    pixels = picture.pixels
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ImageWriteError(f"{path}: pixels must be HxWx3 or HxWx1, got shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"{path}: pixels must be uint8 or uint16, got {pixels.dtype}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageWriteError(f"{path}: cannot write an empty image {pixels.shape[:2]}")
    alpha = picture.alpha
    if alpha is not None:
        if alpha.ndim == 3 and alpha.shape[2] == 1:
            alpha = alpha[:, :, 0]
        if alpha.shape != pixels.shape[:2]:
            raise ImageWriteError(
                f"{path}: alpha shape {alpha.shape} does not match pixels {pixels.shape[:2]}"
            )
        if alpha.dtype != pixels.dtype:
            alpha = to_8bit(alpha) if pixels.dtype == np.uint8 else alpha.astype(np.uint16) * 257
    return pixels, alpha


def _icc_fits(icc: bytes | None, channels: int, fmt: str) -> bool:
    """Only embed a profile whose colour space matches what is written (a grey profile in an RGB
    file, e.g. grey written as RGB WebP, makes colour-managed viewers misrender or reject it)."""
    if not icc or len(icc) < 20:
        return False
    space = icc[16:20]
    written_channels = 3 if fmt in ("webp", "heic", "avif") else channels
    return space == (b"GRAY" if written_channels == 1 else b"RGB ")


def _exif_for_write(exif: bytes | None) -> bytes | None:
    """Normalised EXIF (header, orientation 1) or None; belt and braces for pictures built
    elsewhere whose EXIF may still carry a rotation."""
    if not exif:
        return None
    normalised, _ = _normalise_exif(exif)
    return normalised


def _write_pillow(
    path: Path,
    fmt: str,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
    quality: int | None,
) -> None:
    grey = pixels.shape[2] == 1
    if alpha is not None and pixels.dtype == np.uint8:
        image = Image.fromarray(np.dstack((pixels, alpha)))  # LA or RGBA
    elif grey:
        image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))  # L or I;16
    else:
        image = Image.fromarray(np.ascontiguousarray(pixels))
    params: dict[str, object] = {}
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    q = DEFAULT_QUALITY if quality is None else quality
    if fmt == "jpeg":
        if exif and len(exif) > 65533:
            log.warning(
                "%s: EXIF block too large for JPEG (%d bytes); not written", path, len(exif)
            )
            params.pop("exif")
        params.update(quality=q, subsampling=0 if q >= 90 else 2)
        pil_format = "JPEG"
    elif fmt == "webp":
        if image.mode in ("L", "LA"):
            image = image.convert("RGBA" if image.mode == "LA" else "RGB")
        params.update(quality=q, lossless=q == 100, method=4)
        pil_format = "WEBP"
    elif fmt == "avif":
        image = _avif_image(image)
        params.update(quality=q)
        pil_format = "AVIF"
    elif fmt == "gif":
        image, transparent = gif_frame(image)
        params.pop("exif", None)
        params.pop("icc_profile", None)
        if transparent:
            params["transparency"] = image.info["transparency"]
        pil_format = "GIF"
    elif fmt == "tiff":
        params.update(compression="tiff_lzw")
        pil_format = "TIFF"
    else:
        params.pop("exif", None)
        params.pop("icc_profile", None)
        pil_format = "BMP"
    with atomic_output(path) as temp, _quiet_stderr():  # libtiff reports write errors there too
        image.save(temp, format=pil_format, **params)


def _cv2_order(cv2, pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """RGB(A) pixels (and alpha) as OpenCV's BGR(A) array; grey stays one plane."""
    if alpha is not None:
        return cv2.cvtColor(np.dstack((pixels, alpha)), cv2.COLOR_RGBA2BGRA)
    if pixels.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(pixels[:, :, 0])


def _write_tiff16(
    path: Path,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
) -> None:
    """16-bit colour (and 16-bit grey + alpha, as RGBA) as TIFF through OpenCV."""
    if pixels.shape[2] == 1:
        log.warning("%s: 16-bit grey + alpha TIFF is written as RGBA", path.name)
        pixels = np.repeat(pixels, 3, axis=2)
    cv2 = _cv2()
    with _quiet_stderr():
        ok, buffer = cv2.imencode(".tiff", _cv2_order(cv2, pixels, alpha))
    if not ok:
        raise ImageWriteError(f"{path}: OpenCV could not encode a 16-bit TIFF")
    atomic_write_bytes(path, _tiff_with_metadata(buffer.tobytes(), icc, exif))
