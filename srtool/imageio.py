"""Image files in and out: the only module of srtool that knows file formats.

Everything else sees a :class:`Picture`: colour samples as an ``HxWxC`` numpy array (C = 3 RGB or
1 grey) in the dtype the file stores (uint8 or uint16), an optional alpha plane, the bit depth
read from the file header, and the ICC profile and EXIF block to write back.

Why the care:

* **16-bit stays 16-bit.** Pillow has no 16-bit-per-channel RGB(A) mode and silently truncates
  such PNG/TIFF files to 8 bits, so the bit depth is taken from the header (PNG IHDR, TIFF
  BitsPerSample) and 16-bit colour is decoded and encoded with OpenCV instead. The bit depth is
  never guessed from pixel values.
* **Photos come out upright.** EXIF orientation is applied on read (the semantics of
  ``PIL.ImageOps.exif_transpose``) and the returned EXIF says orientation 1, so a viewer that
  honours the tag does not rotate the result a second time. The orientation value is patched in
  the raw EXIF bytes; everything else in the block (maker notes included) is kept byte for byte.
* **Bad files fail with one line.** A zero-byte, truncated, corrupt or non-image file, an
  unsupported sample format or an image over the pixel limit raises :class:`ImageReadError`
  naming the file and the cause. The size is checked from the header before any pixel is
  decoded, so a decompression bomb costs nothing. Pillow's own global bomb limit is bypassed by
  opening files through the format plugins directly: ``max_pixels`` is the one limit.
* **Nothing is half-written.** Every write goes to a hidden temporary file in the destination
  folder that is fsynced and renamed over the target; on any failure, Ctrl-C included, the
  temporary file is removed and the target is untouched (:func:`atomic_output`).

Arrays returned by :func:`read_image` are read-only (some are views of one decoded buffer, e.g.
colour and alpha of an RGBA file); take a copy before editing in place.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms
from PIL.BmpImagePlugin import BmpImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile
from PIL.TiffImagePlugin import TiffImageFile

from srtool.atomic import atomic_output, atomic_write_bytes
from srtool.errors import ImageReadError, ImageWriteError, UsageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_QUALITY",
    "PNG_COMPRESS_LEVEL",
    "SUPPORTED_SUFFIXES",
    "FORMATS",
    "Picture",
    "read_image",
    "write_image",
    "as_float",
    "from_float",
    "to_8bit",
    "format_for_path",
    "suffix_for_format",
]

log = logging.getLogger("srtool")

DEFAULT_MAX_PIXELS = 100_000_000
"""Inputs with more pixels than this are refused before decoding (decompression-bomb guard)."""

DEFAULT_QUALITY = 95
"""JPEG/WebP quality when none is given. JPEG at >= 90 is written with 4:4:4 chroma."""

PNG_COMPRESS_LEVEL = 1
"""zlib level for PNG. On a 12 MP upscaled photo, level 1 encodes several times faster than the
usual 6 for files only a little larger; upscaling writes many large PNGs, so speed wins."""

FORMATS = ("png", "jpeg", "webp", "tiff", "bmp")

_SUFFIX_FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
}
SUPPORTED_SUFFIXES = frozenset(_SUFFIX_FORMATS)
_FORMAT_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tiff", "bmp": ".bmp"}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
_EIGHT_BIT_FORMATS = frozenset({"jpeg", "webp", "bmp"})
_ALPHA_FORMATS = frozenset({"png", "webp", "tiff"})
_EXIF_HEADER = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION_TAG = 0x0112


# --------------------------------------------------------------------------- the picture


@dataclass(eq=False)
class Picture:
    """A decoded image file.

    ``pixels`` is HxWxC (C = 3 RGB or 1 grey), uint8 or uint16 exactly as stored; ``alpha`` is HxW
    in the same dtype or None. ``bit_depth`` (8 or 16) comes from the file header. ``exif`` is a
    complete EXIF block starting with ``b"Exif\\0\\0"`` whose orientation is 1 (the pixels are
    already upright). :func:`write_image` encodes from the arrays' dtype, so a picture whose
    pixels were replaced keeps working.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    format: str = "png"
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else int(self.pixels.shape[2])

    @property
    def is_grey(self) -> bool:
        return self.channels == 1

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


# --------------------------------------------------------------------------- conversions


def as_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 samples -> float32 in [0, 1], scaled by the dtype (never by the values)."""
    if pixels.dtype == np.uint8 or pixels.dtype == np.uint16:
        out = pixels.astype(np.float32)
        out /= np.float32(np.iinfo(pixels.dtype).max)
        return out
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float32, copy=False)
    raise TypeError(f"as_float expects uint8, uint16 or float samples, got {pixels.dtype}")


def from_float(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """float samples (nominally [0, 1]) -> uint8 (bit_depth 8) or uint16 (16), clipped and rounded.
    NaN becomes 0."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    peak = np.float32(np.iinfo(dtype).max)
    scaled = np.multiply(pixels, peak, dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, 0.0, peak, out=scaled)
    scaled += np.float32(0.5)  # round half up; values are non-negative so truncation rounds
    return scaled.astype(dtype)


def to_8bit(samples: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 rounding to nearest (x * 255 / 65535); uint8 passes through."""
    if samples.dtype == np.uint8:
        return samples
    if samples.dtype != np.uint16:
        raise TypeError(f"expected uint8 or uint16 samples, got {samples.dtype}")
    wide = samples.astype(np.uint32)
    wide += 128
    wide //= 257
    return wide.astype(np.uint8)


# --------------------------------------------------------------------------- formats and suffixes


def _normalise_format(fmt: str) -> str:
    name = fmt.lower().lstrip(".")
    name = _FORMAT_ALIASES.get(name, name)
    if name not in _FORMAT_SUFFIX:
        raise UsageError(f"unknown image format '{fmt}' (choose from {', '.join(FORMATS)})")
    return name


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The format ("png", "jpeg", "webp", "tiff", "bmp") a file name's suffix stands for."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIX_FORMATS[suffix]
    except KeyError:
        shown = suffix or "no suffix"
        raise UsageError(
            f"{path}: unsupported image type ({shown}); supported: "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}"
        ) from None


def suffix_for_format(fmt: str) -> str:
    """The usual file suffix for a format: png -> .png, jpeg -> .jpg, tiff -> .tiff, ..."""
    return _FORMAT_SUFFIX[_normalise_format(fmt)]


# --------------------------------------------------------------------------- OpenCV helpers

_cv2_quiet_lock = threading.Lock()
_cv2_quiet_users = 0
_cv2_saved_level: int | None = None


def _cv2():
    import cv2  # imported on first 16-bit file: most runs never need it

    return cv2


@contextmanager
def _quiet_cv2() -> Iterator[object]:
    """Silence OpenCV's stderr logging while decoding (a broken file is reported as an exception
    by us, not as a stray "[ WARN:0] libpng ..." line in the middle of a progress bar). Counted, so
    concurrent decoders restore the level only when the last one finishes."""
    global _cv2_quiet_users, _cv2_saved_level
    cv2 = _cv2()
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:
        yield cv2
        return
    with _cv2_quiet_lock:
        if _cv2_quiet_users == 0:
            _cv2_saved_level = logging_api.getLogLevel()
            logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
        _cv2_quiet_users += 1
    try:
        yield cv2
    finally:
        with _cv2_quiet_lock:
            _cv2_quiet_users -= 1
            if _cv2_quiet_users == 0 and _cv2_saved_level is not None:
                logging_api.setLogLevel(_cv2_saved_level)


# --------------------------------------------------------------------------- reading


class _Bad(Exception):
    """A decode problem; read_image prefixes the file name and raises ImageReadError."""


_OTHER_SIGNATURES = (
    (b"GIF8", "a GIF image"),
    (b"8BPS", "a Photoshop document"),
    (b"%PDF", "a PDF document"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"PK\x03\x04", "a ZIP archive"),
)


def _sniff(head: bytes) -> str | None:
    """The format from the first bytes (the suffix may lie)."""
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM":
        return "bmp"
    return None


def _describe_unknown(head: bytes) -> str:
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"{what}, not a supported format (PNG, JPEG, WebP, TIFF, BMP)"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        return f"an ISO media file ({brand}: HEIC/AVIF?), not a supported format"
    sample = head[:64]
    if sample and all(b in b"\t\n\r" or 32 <= b < 127 for b in sample):
        return "a text file, not an image"
    return "not an image (unknown signature); supported: PNG, JPEG, WebP, TIFF, BMP"


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Picture:
    """Decode a PNG, JPEG, WebP, TIFF or BMP file into a :class:`Picture`.

    ``max_pixels`` (None = no limit) is checked against the header before decoding; Pillow's
    global limit is not consulted, except that its TIFF and WebP decoders still refuse more than
    2 x ``PIL.Image.MAX_IMAGE_PIXELS`` (179 MP by default). Raises :class:`ImageReadError` with
    one line naming the file and the cause.

    Conversions: palette -> RGB (RGBA when it has transparency); "1" -> grey; LA -> grey + alpha;
    colour-key transparency (PNG tRNS) -> an alpha plane; CMYK -> RGB through its embedded ICC
    profile when present (the result is sRGB, so ``icc_profile`` is None), else Pillow's plain
    conversion; 16-bit grey ("I;16"/"I" with a 16-bit header) -> uint16 grey. 32-bit integer and
    floating-point samples (modes "I" and "F" from 32-bit files, HDR data) are refused: mapping
    them to [0, 1] would need a tone-mapping decision srtool cannot make for the user.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    fmt = _sniff(data[:32])
    if fmt is None:
        raise ImageReadError(f"{path}: {_describe_unknown(data[:64])}")
    try:
        return _decode(data, fmt, max_pixels)
    except _Bad as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {_one_line(exc)}") from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to decode this {fmt.upper()}") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
        IndexError,
        KeyError,
        TypeError,
        ZeroDivisionError,
        ImageCms.PyCMSError,
    ) as exc:
        raise ImageReadError(
            f"{path}: corrupt or truncated {fmt.upper()} ({_one_line(exc)})"
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise _Bad(f"invalid image size {width}x{height} in the header")
    if max_pixels is not None and width * height > max_pixels:
        raise _Bad(
            f"{width}x{height} = {width * height / 1e6:.1f} MP is over the limit of "
            f"{max_pixels / 1e6:g} MP (possible decompression bomb; raise --max-pixels to allow it)"
        )


def _decode(data: bytes, fmt: str, max_pixels: int | None) -> Picture:
    if fmt == "png":
        return _decode_png(data, max_pixels)
    if fmt == "webp":
        width, height = _webp_size(data)
        _check_size(width, height, max_pixels)
        try:
            from PIL.WebPImagePlugin import WebPImageFile
        except ImportError:  # Pillow built without libwebp
            raise _Bad("this Pillow build cannot decode WebP") from None
        image = WebPImageFile(io.BytesIO(data))
    else:
        factory = {"jpeg": JpegImageFile, "tiff": TiffImageFile, "bmp": BmpImageFile}[fmt]
        image = factory(io.BytesIO(data))  # parses the header only
        _check_size(image.width, image.height, max_pixels)
    with image:
        if fmt == "tiff":
            return _decode_tiff(data, image)
        exif, orientation = _normalise_exif(image.info.get("exif"))
        icc = image.info.get("icc_profile") or None
        return _from_pillow(image, fmt=fmt, bits=8, icc=icc, exif=exif, orientation=orientation)


def _webp_size(data: bytes) -> tuple[int, int]:
    """Canvas size from a WebP header, read before Pillow's decoder allocates anything."""
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    raise _Bad("corrupt or truncated WEBP (no valid VP8/VP8L/VP8X header)")


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


# -- PNG


@dataclass
class _PngInfo:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    icc: bytes | None
    exif: bytes | None


def _png_info(data: bytes) -> _PngInfo:
    """Walk the chunk list: header fields, iCCP and eXIf, and proof that the file is complete
    (OpenCV would otherwise hand back a partly decoded image of a truncated file)."""
    pos = len(_PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    icc = exif = None
    seen_idat = False
    while True:
        if pos + 8 > len(data):
            raise _Bad("truncated PNG (the file ends before the IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise _Bad(f"truncated PNG (the file ends inside a {kind.decode('latin-1')} chunk)")
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            if length != 13:
                raise _Bad("corrupt PNG (bad IHDR chunk)")
            header = struct.unpack(">IIBB", body[:10])
        elif header is None:
            raise _Bad("corrupt PNG (IHDR is not the first chunk)")
        elif kind == b"IDAT":
            seen_idat = True
        elif kind == b"iCCP":
            name_end = body.find(b"\x00")
            try:
                icc = zlib.decompress(body[name_end + 2 :]) if name_end >= 0 else None
            except zlib.error:
                log.debug("ignoring an undecodable iCCP chunk")
        elif kind == b"eXIf":
            exif = body
        elif kind == b"IEND":
            break
        pos = end
    if not seen_idat:
        raise _Bad("corrupt PNG (no image data)")
    width, height, bit_depth, colour_type = header
    return _PngInfo(width, height, bit_depth, colour_type, icc, exif)


def _decode_png(data: bytes, max_pixels: int | None) -> Picture:
    info = _png_info(data)
    _check_size(info.width, info.height, max_pixels)
    exif, orientation = _normalise_exif(info.exif)
    if info.bit_depth == 16 and info.colour_type in (2, 4, 6):
        # RGB, grey+alpha and RGBA at 16 bits: Pillow would truncate them to 8.
        if orientation != 1:  # some OpenCV versions rotate by themselves; we rotate exactly once
            data = _png_without_chunk(data, b"eXIf")
        pixels, alpha = _cv2_decode16(data, grey=info.colour_type == 4)
        pixels, alpha = _orient(pixels, alpha, orientation)
        return Picture(pixels, alpha, 16, "png", info.icc, exif)
    with PngImageFile(io.BytesIO(data)) as image:
        return _from_pillow(
            image, fmt="png", bits=info.bit_depth, icc=info.icc, exif=exif, orientation=orientation
        )


def _cv2_decode16(data: bytes | bytearray, *, grey: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit colour through OpenCV: BGR(A) -> RGB(A) (grey + alpha arrives as BGRA)."""
    with _quiet_cv2() as cv2:
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


def _png_without_chunk(data: bytes, kind: bytes) -> bytes:
    out = [data[:8]]
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if data[pos + 4 : pos + 8] != kind:
            out.append(data[pos:end])
        pos = end
    return b"".join(out)


# -- TIFF


_TIFF_KEPT_IFD0_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432)  # description, make, model, ...


def _decode_tiff(data: bytes, image: TiffImageFile) -> Picture:
    tags = image.tag_v2
    bits_per_sample = tags.get(258, (1,))
    bits = int(bits_per_sample[0] if isinstance(bits_per_sample, tuple) else bits_per_sample)
    samples = int(tags.get(277, 1))
    photometric = int(tags.get(262, -1))
    sample_format = tags.get(339, (1,))
    sample_format = int(sample_format[0] if isinstance(sample_format, tuple) else sample_format)
    if sample_format == 3:
        raise _Bad(f"{bits}-bit floating-point TIFF samples are not supported (convert to 16-bit)")
    if bits not in (1, 2, 4, 8, 16):
        raise _Bad(f"{bits}-bit TIFF samples are not supported (8 and 16 are)")
    orientation = int(tags.get(274, 1))
    orientation = orientation if 1 <= orientation <= 8 else 1
    exif = _tiff_exif(image)
    icc = image.info.get("icc_profile") or None
    if bits == 16 and photometric == 2 and samples >= 3:  # 16-bit RGB(A)
        if orientation != 1:  # OpenCV 5 applies the TIFF tag itself; we rotate exactly once
            data = _tiff_upright(data)
        pixels, alpha = _cv2_decode16(data, grey=False)
        pixels, alpha = _orient(pixels, alpha, orientation)
        return Picture(pixels, alpha, 16, "tiff", icc, exif)
    with _pillow_bomb_warning_off(image.width, image.height):
        image.load()
    if _ORIENTATION_TAG not in image.tag_v2:  # recent Pillow applies it while loading a TIFF
        orientation = 1
    return _from_pillow(image, fmt="tiff", bits=bits, icc=icc, exif=exif, orientation=orientation)


def _tiff_upright(data: bytes) -> bytearray:
    """A copy of a TIFF whose first directory says orientation 1 (classic and BigTIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    first = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count = struct.unpack_from(order + ("Q" if big else "H"), data, first)[0]
    entry_size, start = (20, first + 8) if big else (12, first + 2)
    patched = bytearray(data)
    for entry in range(start, start + entry_size * count, entry_size):
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag == _ORIENTATION_TAG and kind == 3:
            struct.pack_into(order + "H", patched, entry + (12 if big else 8), 1)
    return patched


def _tiff_exif(image: TiffImageFile) -> bytes | None:
    """A TIFF's own tags include its layout (strip offsets, compression...); carry over only the
    descriptive ones plus the EXIF and GPS sub-directories, as a portable EXIF block."""
    source = image.getexif()
    exif = Image.Exif()
    for tag in _TIFF_KEPT_IFD0_TAGS:
        if tag in source:
            exif[tag] = source[tag]
    for pointer in (0x8769, 0x8825):  # Exif IFD, GPS IFD
        if pointer in source:
            sub = source.get_ifd(pointer)
            if sub:
                exif[pointer] = sub
    if not len(exif):
        return None
    exif[_ORIENTATION_TAG] = 1
    try:
        return exif.tobytes()
    except (ValueError, TypeError, struct.error) as exc:
        log.debug("dropping TIFF metadata that does not serialise as EXIF: %s", exc)
        return None


# -- shared Pillow path


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
            log.warning("CMYK profile unusable (%s); converting without it", _one_line(exc))
    return image.convert("RGB"), None


# -- orientation and EXIF


def _orient(
    pixels: np.ndarray, alpha: np.ndarray | None, orientation: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply an EXIF orientation (same result as PIL.ImageOps.exif_transpose). Rotated results are
    made contiguous once here, so later stages do not pay for strided access."""
    op = _ORIENT_OPS.get(orientation)
    if op is not None:
        pixels = np.ascontiguousarray(op(pixels))
        pixels.flags.writeable = False
        if alpha is not None:
            alpha = np.ascontiguousarray(op(alpha))
            alpha.flags.writeable = False
    else:
        pixels.flags.writeable = False
        if alpha is not None:
            alpha.flags.writeable = False
    return pixels, alpha


_ORIENT_OPS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # mirror left-right
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transpose
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transverse
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
}


def _normalise_exif(raw: bytes | None) -> tuple[bytes | None, int]:
    """(EXIF block with b"Exif\\0\\0" header and orientation set to 1, the original orientation).

    The orientation entry is patched in place, so the rest of the block (maker notes with
    absolute offsets included) survives untouched. A block that is not TIFF-structured or whose
    first directory cannot be read is dropped: keeping it could rotate the output twice.
    """
    if not raw:
        return None, 1
    body = raw[len(_EXIF_HEADER) :] if raw.startswith(_EXIF_HEADER) else raw
    if body[:4] not in (b"II*\x00", b"MM\x00*"):
        log.debug("dropping an EXIF block without a TIFF header")
        return None, 1
    order = "<" if body[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", body, 4)
        (count,) = struct.unpack_from(order + "H", body, ifd)
        for index in range(count):
            entry = ifd + 2 + 12 * index
            tag, kind, number = struct.unpack_from(order + "HHI", body, entry)
            if tag != _ORIENTATION_TAG:
                continue
            if kind != 3 or number < 1:  # not a SHORT: unreadable, treat as upright
                return _EXIF_HEADER + body, 1
            (value,) = struct.unpack_from(order + "H", body, entry + 8)
            patched = bytearray(body)
            struct.pack_into(order + "H", patched, entry + 8, 1)
            return _EXIF_HEADER + bytes(patched), value if 1 <= value <= 8 else 1
    except struct.error:
        log.debug("dropping an EXIF block whose first directory is unreadable")
        return None, 1
    return _EXIF_HEADER + body, 1


# --------------------------------------------------------------------------- writing


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
    16-bit colour PNG and TIFF are encoded by OpenCV (Pillow has no such mode) and srtool inserts
    the iCCP/eXIf chunks (PNG) or the ICC, EXIF and GPS tags (TIFF) itself. A 16-bit TIFF keeps
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
        if pixels.dtype == np.uint16 and (pixels.shape[2] == 3 or alpha is not None):
            _write_cv2_16(path, fmt, pixels, alpha, icc, exif)
        else:
            _write_pillow(path, fmt, pixels, alpha, icc, exif, quality)
    except ImageWriteError:
        raise
    except (OSError, ValueError, TypeError, KeyError, struct.error, zlib.error) as exc:
        raise ImageWriteError(f"{path}: cannot write {fmt.upper()} ({_one_line(exc)})") from None


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
    written_channels = 3 if fmt == "webp" else channels
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
    elif fmt == "png":
        params.update(compress_level=PNG_COMPRESS_LEVEL)
        pil_format = "PNG"
    elif fmt == "tiff":
        params.update(compression="tiff_lzw")
        pil_format = "TIFF"
    else:
        params.pop("exif", None)
        params.pop("icc_profile", None)
        pil_format = "BMP"
    with atomic_output(path) as temp:
        image.save(temp, format=pil_format, **params)


def _write_cv2_16(
    path: Path,
    fmt: str,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
) -> None:
    """16-bit colour (and 16-bit grey + alpha) as PNG or TIFF."""
    grey = pixels.shape[2] == 1
    if fmt == "png" and grey:  # grey + alpha: OpenCV has no 2-channel PNG writer
        encoded = _encode_png_grey_alpha16(pixels[:, :, 0], alpha)
    else:
        if grey:
            log.warning("%s: 16-bit grey + alpha TIFF is written as RGBA", path.name)
            pixels = np.repeat(pixels, 3, axis=2)
        cv2 = _cv2()
        if alpha is not None:
            bgr = cv2.cvtColor(np.dstack((pixels, alpha)), cv2.COLOR_RGBA2BGRA)
        else:
            bgr = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
        if fmt == "png":
            params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL]
            ok, buffer = cv2.imencode(".png", bgr, params)
        else:
            ok, buffer = cv2.imencode(".tiff", bgr)
        if not ok:
            raise ImageWriteError(f"{path}: OpenCV could not encode a 16-bit {fmt.upper()}")
        encoded = buffer.tobytes()
    if fmt == "png":
        encoded = _png_with_metadata(encoded, icc, exif)
    else:
        encoded = _tiff_with_metadata(encoded, icc, exif)
    atomic_write_bytes(path, encoded)


def _tiff_with_metadata(tiff: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Add the ICC profile and EXIF (descriptive IFD0 tags, Exif and GPS sub-directories) that
    OpenCV's TIFF writer cannot store.

    A new first directory is appended: the original entries byte for byte (their values and
    offsets stay valid because no existing byte moves) plus the new tags, and the header is
    pointed at it. The superseded directory (a few hundred bytes) is left unreferenced.
    """
    if not icc and not exif:
        return tiff
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):  # BigTIFF: leave as written
        log.warning("ICC profile and EXIF not written into a BigTIFF file")
        return tiff
    order = "<" if tiff[:2] == b"II" else ">"
    (first,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, first)
    entries = {
        struct.unpack_from(order + "H", tiff, first + 2 + 12 * i)[0]: tiff[
            first + 2 + 12 * i : first + 14 + 12 * i
        ]
        for i in range(count)
    }
    (next_ifd,) = struct.unpack_from(order + "I", tiff, first + 2 + 12 * count)

    tags = Image.Exif()
    if exif:
        tags.load(exif)
    ascii_tags = {t: tags[t] for t in _TIFF_KEPT_IFD0_TAGS if isinstance(tags.get(t), str)}
    sub_ifds = {p: tags.get_ifd(p) for p in (0x8769, 0x8825) if p in tags}
    sub_ifds = {p: values for p, values in sub_ifds.items() if values}
    new_count = len(set(entries) | set(ascii_tags) | set(sub_ifds) | {_ORIENTATION_TAG})
    new_count += 1 if icc and 34675 not in entries else 0
    start = len(tiff) + len(tiff) % 2  # directories start on a word boundary
    data_at = start + 2 + 12 * new_count + 4
    blobs: list[bytes] = []

    def put(tag: int, kind: int, number: int, payload: bytes) -> None:
        nonlocal data_at
        if len(payload) <= 4:
            value = payload.ljust(4, b"\x00")
        else:
            value = struct.pack(order + "I", data_at)
            payload += b"\x00" * (len(payload) % 2)
            blobs.append(payload)
            data_at += len(payload)
        entries[tag] = struct.pack(order + "HHI", tag, kind, number) + value

    put(_ORIENTATION_TAG, 3, 1, struct.pack(order + "H", 1))
    for tag, text in ascii_tags.items():
        encoded = text.encode("utf-8", "replace") + b"\x00"
        put(tag, 2, len(encoded), encoded)
    if icc:
        put(34675, 7, len(icc), icc)
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    for pointer, values in sub_ifds.items():
        directory = ImageFileDirectory_v2(ifh=tiff[:8], group=pointer)
        for key, value in values.items():
            directory[key] = value
        offset = data_at
        blob = directory.tobytes(offset)
        blobs.append(blob + b"\x00" * (len(blob) % 2))
        data_at += len(blobs[-1])
        entries[pointer] = struct.pack(order + "HHII", pointer, 4, 1, offset)

    assert len(entries) == new_count
    directory_bytes = struct.pack(order + "H", new_count)
    directory_bytes += b"".join(entries[tag] for tag in sorted(entries))
    directory_bytes += struct.pack(order + "I", next_ifd)
    header = tiff[:4] + struct.pack(order + "I", start)
    padding = b"\x00" * (start - len(tiff))
    return b"".join((header, tiff[8:], padding, directory_bytes, *blobs))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (before any PLTE/IDAT, as the spec requires)
    and drop chunks they supersede (sRGB/iCCP, an older eXIf)."""
    if not icc and not exif:
        return png
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        body = exif[len(_EXIF_HEADER) :] if exif.startswith(_EXIF_HEADER) else exif
        extra += _png_chunk(b"eXIf", body)
    superseded = {b"eXIf"} if not icc else {b"eXIf", b"iCCP", b"sRGB"}
    if not exif:
        superseded.discard(b"eXIf")
    out = [png[:8]]
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        kind = png[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind not in superseded:
            out.append(png[pos:end])
        if kind == b"IHDR":
            out.append(extra)
        pos = end
    return b"".join(out)


def _encode_png_grey_alpha16(grey: np.ndarray, alpha: np.ndarray) -> bytes:
    """A 16-bit grey+alpha PNG (colour type 4), which neither Pillow nor OpenCV writes. Each row
    uses the Up filter (difference to the row above), vectorised in numpy."""
    height, width = grey.shape
    rows = np.empty((height, width, 2), dtype=">u2")
    rows[:, :, 0] = grey
    rows[:, :, 1] = alpha
    raw = rows.view(np.uint8).reshape(height, width * 4)
    filtered = np.empty((height, width * 4 + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type Up
    filtered[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps mod 256
    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), PNG_COMPRESS_LEVEL)),
            _png_chunk(b"IEND", b""),
        )
    )
