"""What the decoders share: the error they raise, the header size check, OpenCV's 16-bit decode
and the Pillow path that turns a Pillow image of any supported mode into a :class:`Picture`.

Decoders raise ``_Bad`` with the cause only; :func:`~srtool.imageio.read_image` adds the file name
and raises :class:`ImageReadError`. The size is checked from the header before any pixel is
decoded (first by :func:`~srtool.imageio.read_image` from the file's first bytes, again here from
the decoder's own header parse). This module sits below :mod:`.png`, :mod:`.tiff`
and :mod:`.read`, so that the format modules can use the shared path without importing
:mod:`.read`.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from srtool.errors import ImageReadError, first_line
from srtool.imageio.exif import _orient
from srtool.imageio.opencv import _quiet_cv2
from srtool.imageio.picture import Picture
from srtool.imageio.quiet import _quiet_stderr

log = logging.getLogger("srtool")


class _Bad(Exception):
    """A decode problem; read_image prefixes the file name and raises ImageReadError."""


@contextmanager
def _read_errors(path: Path, fmt: str) -> Iterator[None]:
    """Whatever decoding ``path`` raises becomes one :class:`ImageReadError` line naming the file
    and the cause."""
    try:
        yield
    except ImageReadError:
        raise
    except _Bad as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {first_line(exc)}") from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to decode this {fmt.upper()}") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's error, not the decoder's
            raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
        raise ImageReadError(
            f"{path}: corrupt or truncated {fmt.upper()} ({first_line(exc)})"
        ) from exc
    except (
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
        IndexError,
        KeyError,
        TypeError,
        ZeroDivisionError,
        zlib.error,
        ImageCms.PyCMSError,
    ) as exc:
        raise ImageReadError(
            f"{path}: corrupt or truncated {fmt.upper()} ({first_line(exc)})"
        ) from exc


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise _Bad(f"invalid image size {width}x{height} in the header")
    if max_pixels is not None and width * height > max_pixels:
        raise _Bad(
            f"{width}x{height} = {width * height / 1e6:.1f} MP is over the limit of "
            f"{max_pixels / 1e6:g} MP (possible decompression bomb; raise --max-pixels to allow it)"
        )


def _cv2_decode16(data: bytes | bytearray, *, grey: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit colour through OpenCV: BGR(A) -> RGB(A) (grey + alpha arrives as BGRA)."""
    with _quiet_cv2() as cv2, _quiet_stderr():  # libpng and libtiff print to stderr
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise _Bad("corrupt or truncated 16-bit image (the decoder rejected it)")
    if decoded.dtype != np.uint16:
        raise _Bad(f"unexpected {decoded.dtype} samples from a 16-bit file")
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    channels = decoded.shape[2]
    if channels == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    elif channels == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    elif channels != 1:
        raise _Bad(f"unsupported 16-bit layout with {channels} channels")
    decoded.flags.writeable = False
    if channels == 4:
        return (decoded[:, :, :1] if grey else decoded[:, :, :3]), decoded[:, :, 3]
    return decoded, None


@contextmanager
def _pillow_bomb_warning_off(width: int, height: int) -> Iterator[None]:
    """Some plugins (TIFF) re-run Pillow's global bomb check while loading. Our own limit has
    already been applied, so silence the duplicate warning; the filter is only touched for the rare
    images above Pillow's limit (the warnings filter list is process-global)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or width * height <= limit:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


# --------------------------------------------------------------------------- the shared Pillow path


def _from_pillow(
    image: Image.Image,
    *,
    fmt: str,
    bits: int,
    icc: bytes | None,
    exif: bytes | None,
    orientation: int,
) -> Picture:
    mode = image.mode
    transparency = image.info.get("transparency")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or image.has_transparency_data
        image = image.convert("RGBA" if has_alpha else "RGB")
        bits = 8
    elif mode == "1":
        image = image.convert("L")
        bits = 8
    elif mode == "CMYK":
        image, icc = _cmyk_to_rgb(image, icc)
        bits = 8
    elif mode in ("RGBX", "YCbCr"):
        image = image.convert("RGB")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "F":
        raise _Bad("32-bit floating-point samples are not supported (convert to 16-bit)")
    elif mode == "I" and bits != 16:
        raise _Bad(f"{bits}-bit integer samples are not supported (8 and 16 are)")
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        raise _Bad(f"unsupported colour mode {mode}")

    array = np.asarray(image)  # decodes; one copy out of Pillow's buffer
    mode = image.mode
    alpha = None
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        array = np.clip(array, 0, 65535) if mode == "I" else array
        pixels = array.astype(np.uint16, copy=False)[:, :, None]  # native byte order
        bits = 16
    elif mode == "L":
        pixels = array[:, :, None]
        bits = 8
    elif mode == "LA":
        pixels, alpha = array[:, :, :1], array[:, :, 1]
        bits = 8
    elif mode == "RGBA":
        pixels, alpha = array[:, :, :3], array[:, :, 3]
        bits = 8
    else:
        pixels = array
        bits = 8
    if alpha is None and transparency is not None and mode in ("L", "RGB", "I", "I;16", "I;16B"):
        alpha = _colour_key_alpha(pixels, transparency)
    pixels, alpha = _orient(pixels, alpha, orientation)
    return Picture(pixels, alpha, bits, fmt, icc, exif)


def _colour_key_alpha(pixels: np.ndarray, key: object) -> np.ndarray | None:
    """PNG tRNS on grey/RGB: one colour is fully transparent."""
    values = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(v, int) for v in values) or len(values) != pixels.shape[2]:
        return None
    transparent = np.all(pixels == np.asarray(values, dtype=pixels.dtype), axis=2)
    if not transparent.any():
        return None
    peak = np.iinfo(pixels.dtype).max
    return np.where(transparent, 0, peak).astype(pixels.dtype)


_SRGB_PROFILE: ImageCms.ImageCmsProfile | None = None


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> sRGB through the embedded profile (a print profile maps ink to colour far better
    than the naive 255 - C - K), else Pillow's plain conversion. The result is sRGB: no profile."""
    global _SRGB_PROFILE
    if icc:
        try:
            if _SRGB_PROFILE is None:
                _SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                image,
                source,
                _SRGB_PROFILE,
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
            if converted is not None:
                return converted, None
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.warning("CMYK profile unusable (%s); converting without it", first_line(exc))
    return image.convert("RGB"), None
