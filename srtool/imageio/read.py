""":func:`read_image`: open a regular file, read its first 64 KiB, sniff the format from the
signature (the suffix may lie) and check the header (pixel limit, file size), then read the rest
and dispatch to the format's decoder: :mod:`.png`, :mod:`.tiff`, or the shared Pillow path for
JPEG, WebP and BMP. Every failure becomes one :class:`ImageReadError` line naming the file and
the cause.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

from PIL.BmpImagePlugin import BmpImageFile
from PIL.GifImagePlugin import GifImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.TiffImagePlugin import TiffImageFile

from srtool.errors import ImageReadError
from srtool.imageio.animation import (
    AnimationReader,
    animation_pixel_limit,
    maybe_animated,
    open_animation,
)
from srtool.imageio.decode import _Bad, _check_size, _from_pillow, _read_errors
from srtool.imageio.exif import _normalise_exif
from srtool.imageio.formats import DEFAULT_MAX_PIXELS
from srtool.imageio.heif import _decode_avif, _decode_heif, _iso_size, _sniff_iso
from srtool.imageio.picture import Picture
from srtool.imageio.png import _PNG_SIGNATURE, _decode_png, _png_header
from srtool.imageio.quiet import _warnings_to_debug
from srtool.imageio.tiff import _decode_tiff, _tiff_header

_OTHER_SIGNATURES = (
    (b"8BPS", "a Photoshop document"),
    (b"%PDF", "a PDF document"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"PK\x03\x04", "a ZIP archive"),
)


def _sniff(head: bytes) -> str | None:
    """The format from the first bytes (the suffix may lie)."""
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    iso = _sniff_iso(head)
    if iso is not None:
        return iso
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
            return f"{what}, not a supported format (PNG, JPEG, WebP, TIFF, BMP, GIF, HEIC, AVIF)"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        return f"an ISO media file ({brand}: a video?), not a supported image format"
    sample = head[:64]
    if sample and all(b in b"\t\n\r" or 32 <= b < 127 for b in sample):
        return "a text file, not an image"
    return (
        "not an image (unknown signature); supported: PNG, JPEG, WebP, TIFF, BMP, GIF, HEIC, AVIF"
    )


_HEAD_BYTES = 64 * 1024
"""Read first, to sniff the format and check the header before the rest is read."""

FILE_BYTES_PER_RAW_BYTE = 4
FILE_METADATA_ALLOWANCE = 64 << 20
"""A file may hold at most ``FILE_BYTES_PER_RAW_BYTE`` times the uncompressed samples its header
declares (width x height x bits per pixel) plus ``FILE_METADATA_ALLOWANCE`` bytes (profiles,
EXIF, XMP, previews); anything larger is refused before it is read. Real single images are far
below it: incompressible noise costs at most about 1.4 bytes per raw byte (LZW TIFF, JPEG at
quality 100). It bounds the memory spent holding the file to a small multiple of the image."""

_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 65536
_JPEG_MAX_JUNK = 1 << 20


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Picture:
    """Decode a PNG, JPEG, WebP, TIFF, BMP, GIF, HEIC/HEIF or AVIF file into a :class:`Picture`
    (the first frame of an animation).

    ``max_pixels`` (None = no limit) is checked against the header before decoding; Pillow's
    global limit is not consulted, except that its TIFF and WebP decoders still refuse more than
    2 x ``PIL.Image.MAX_IMAGE_PIXELS`` (179 MP by default). Raises :class:`ImageReadError` with
    one line naming the file and the cause.

    Only regular files are read (a FIFO, device or socket is refused without waiting on it). The
    first 64 KiB are read to sniff the format and check the header (the pixel limit, and that
    the file is not absurdly large for the size it declares: see
    :data:`FILE_BYTES_PER_RAW_BYTE`) before the rest of the file is read. Warnings and stderr
    messages of the libraries underneath become debug log lines (:mod:`.quiet`).

    Conversions: palette -> RGB (RGBA when it has transparency); "1" -> grey; LA -> grey + alpha;
    colour-key transparency (PNG tRNS) -> an alpha plane; CMYK -> RGB through its embedded ICC
    profile when present (the result is sRGB, so ``icc_profile`` is None), else Pillow's plain
    conversion; 16-bit grey ("I;16"/"I" with a 16-bit header) -> uint16 grey; 10/12-bit HEIC ->
    16-bit (AVIF: 8-bit, Pillow decodes no more). 32-bit integer and
    floating-point samples (modes "I" and "F" from 32-bit files, HDR data) are refused: mapping
    them to [0, 1] would need a tone-mapping decision srtool cannot make for the user. A PNG ICC
    profile that inflates to more than :data:`~srtool.imageio.png.MAX_ICC_BYTES` is dropped
    with a warning.
    """
    result = _read(Path(path), max_pixels, animations=False)
    assert isinstance(result, Picture)
    return result


def read_media(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Picture | AnimationReader:
    """Like :func:`read_image`, but an animated GIF, WebP or PNG (APNG) of several frames comes
    back as an :class:`~srtool.imageio.animation.AnimationReader` that decodes one frame at a
    time. ``max_pixels`` applies to each frame; all frames together may hold a quarter of it."""
    return _read(Path(path), max_pixels, animations=True)


def _read(path: Path, max_pixels: int | None, *, animations: bool) -> Picture | AnimationReader:
    file, size = _open_regular(path)
    with file, _warnings_to_debug(path.name):
        head = b""
        with _read_errors(path, "image"):
            head = file.read(_HEAD_BYTES)
        if not head:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        fmt = _sniff(head[:64])
        if fmt is None:
            raise ImageReadError(f"{path}: {_describe_unknown(head[:64])}")
        with _read_errors(path, fmt):
            _check_header(file, head, size, fmt, max_pixels)
            if size > len(head):
                file.seek(0)
                data = file.read(size)
            else:
                data = head
            animated = animations and maybe_animated(head, fmt)
            del head
            if animated:
                reader = open_animation(data, fmt, max_pixels)
                if reader is not None:
                    reader.path = path
                    return reader
            return _decode(data, fmt, max_pixels, path.name)
    raise AssertionError("unreachable")  # pragma: no cover


def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    """The open file and its size; refuses anything but a regular file. O_NONBLOCK: opening a
    FIFO must not wait for a writer."""
    try:
        file = open(path, "rb", opener=_open_nonblocking)  # closed by the caller
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(file.fileno())
    except OSError as exc:
        file.close()
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        file.close()
        if stat.S_ISDIR(info.st_mode):
            raise ImageReadError(f"{path}: is a folder, not an image file")
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "a special file"
        )
        raise ImageReadError(f"{path}: not a regular file ({kind}), not read")
    if info.st_size == 0:
        file.close()
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    return file, info.st_size


def _open_nonblocking(name: str, flags: int) -> int:
    return os.open(name, flags | getattr(os, "O_NONBLOCK", 0))


def _check_header(file: BinaryIO, head: bytes, size: int, fmt: str, max_pixels: int | None) -> None:
    """The pixel limit and the file-size bound, from the header alone."""
    if fmt == "png":
        info = _png_header(head)
        width, height, raw = info.width, info.height, info.raw_bytes
    elif fmt == "webp":
        width, height = _webp_size(head)
        raw = width * height * 4
    elif fmt == "gif":
        if len(head) < 13:
            raise _Bad("truncated GIF (the file ends inside the header)")
        width, height = struct.unpack_from("<HH", head, 6)
        raw = width * height
    elif fmt in ("heic", "avif"):
        found = _iso_size(head)
        if found is None:  # the header lies after the image data: Pillow's lazy size decides
            if size > FILE_METADATA_ALLOWANCE:
                raise _Bad(f"no image size in the first 64 KiB of this {fmt.upper()}; not read")
            return
        width, height = found  # the coded size (padded; the decoder's crops it): the file bound
        raw = width * height * 6
        if not (width > 0 and height > 0):
            raise _Bad(f"invalid image size {width}x{height} in the header")
        # the exact size (clean aperture) is checked from the decoder's header before decoding
        max_pixels = None if max_pixels is None else max_pixels + 128 * (width + height)
    elif fmt == "bmp":
        width, height, raw = _bmp_header(head)
    elif fmt == "jpeg":
        width, height, raw = _jpeg_header(file, size)
    else:
        width, height, raw = _tiff_header(file, size)
    _check_size(width, height, max_pixels)
    if maybe_animated(head, fmt):  # the file holds up to the animation limit's worth of frames
        total = animation_pixel_limit(max_pixels)
        if total is not None:
            raw *= max(total // max(width * height, 1), 1)
    limit = FILE_BYTES_PER_RAW_BYTE * raw + FILE_METADATA_ALLOWANCE
    if size > limit:
        raise _Bad(
            f"file of {size / 2**20:,.0f} MiB is far larger than a {width}x{height} "
            f"{fmt.upper()} needs (at most {limit / 2**20:,.0f} MiB); not read"
        )


def _bmp_header(head: bytes) -> tuple[int, int, int]:
    if len(head) < 30:
        raise _Bad("truncated BMP (the file ends inside the header)")
    (header_size,) = struct.unpack_from("<I", head, 14)
    if header_size == 12:  # OS/2 1.x
        width, height, _, bits = struct.unpack_from("<HHHH", head, 18)
    elif header_size in (40, 52, 56, 64, 108, 124):
        width, height, _, bits = struct.unpack_from("<iiHH", head, 18)
    else:
        raise _Bad(f"corrupt BMP (unsupported header type {header_size})")
    height = abs(height)  # negative: rows stored top-down
    return width, height, (max(width, 0) * max(bits, 1) + 7) // 8 * height


def _jpeg_header(file: BinaryIO, size: int) -> tuple[int, int, int]:
    """(width, height, raw bytes) from the frame header, walking the segments before it with
    seeks: profiles, EXIF and XMP ahead of it can run to megabytes."""
    pos = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        file.seek(pos)
        marker = file.read(4)
        if len(marker) < 2:
            break
        if marker[0] != 0xFF:  # junk between segments: skip to the next 0xFF, as decoders do
            skipped = _skip_to_ff(file, pos)
            if skipped is None:
                raise _Bad("corrupt JPEG (no frame header found)")
            pos = skipped
            continue
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            pos += 1
            continue
        if kind in (0x00, 0x01, 0xD8) or 0xD0 <= kind <= 0xD7:  # no length field
            pos += 2
            continue
        if kind in (0xD9, 0xDA):
            raise _Bad("corrupt JPEG (the scan starts before a frame header)")
        if len(marker) < 4:
            break
        (length,) = struct.unpack_from(">H", marker, 2)
        if length < 2:
            raise _Bad(f"corrupt JPEG (segment of length {length})")
        if kind in _JPEG_FRAME_MARKERS:
            frame = file.read(6)
            if len(frame) < 6:
                break
            precision, height, width, components = struct.unpack(">BHHB", frame)
            return width, height, width * height * max(components, 1) * (2 if precision > 8 else 1)
        pos += 2 + length
        if pos >= size:
            break
    else:
        raise _Bad("corrupt JPEG (no frame header in the first 65536 segments)")
    raise _Bad("truncated JPEG (the file ends before the frame header)")


def _skip_to_ff(file: BinaryIO, pos: int) -> int | None:
    """The next 0xFF byte within :data:`_JPEG_MAX_JUNK` bytes, read 4 KiB at a time."""
    limit = pos + _JPEG_MAX_JUNK
    while pos < limit:
        file.seek(pos)
        window = file.read(4096)
        if not window:
            return None
        found = window.find(b"\xff")
        if found >= 0:
            return pos + found
        pos += len(window)
    return None


def _decode(data: bytes, fmt: str, max_pixels: int | None, name: str = "") -> Picture:
    if fmt == "png":
        return _decode_png(data, max_pixels, name)
    if fmt == "heic":
        return _decode_heif(data, max_pixels)
    if fmt == "avif":
        return _decode_avif(data, max_pixels)
    if fmt == "webp":
        width, height = _webp_size(data)
        _check_size(width, height, max_pixels)
        try:
            from PIL.WebPImagePlugin import WebPImageFile
        except ImportError:  # Pillow built without libwebp
            raise _Bad("this Pillow build cannot decode WebP") from None
        image = WebPImageFile(io.BytesIO(data))
    else:
        factory = {
            "jpeg": JpegImageFile,
            "tiff": TiffImageFile,
            "bmp": BmpImageFile,
            "gif": GifImageFile,
        }[fmt]
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
