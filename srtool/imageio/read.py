""":func:`read_image`: read the bytes, sniff the format from the signature (the suffix may lie),
then dispatch to the format's decoder: :mod:`.png`, :mod:`.tiff`, or the shared Pillow path for
JPEG, WebP and BMP, each after the size check from the header. Every failure becomes one
:class:`ImageReadError` line naming the file and the cause.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

from PIL import Image, ImageCms
from PIL.BmpImagePlugin import BmpImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.TiffImagePlugin import TiffImageFile

from srtool.errors import ImageReadError, first_line
from srtool.imageio.decode import _Bad, _check_size, _from_pillow
from srtool.imageio.exif import _normalise_exif
from srtool.imageio.formats import DEFAULT_MAX_PIXELS
from srtool.imageio.picture import Picture
from srtool.imageio.png import _PNG_SIGNATURE, _decode_png
from srtool.imageio.tiff import _decode_tiff

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
        raise ImageReadError(f"{path}: {first_line(exc)}") from None
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
            f"{path}: corrupt or truncated {fmt.upper()} ({first_line(exc)})"
        ) from exc


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
