"""PNG at the byte level, in both directions.

Reading: the chunk walk that takes the header fields, iCCP and eXIf and proves the file complete
before anything is decoded (OpenCV would hand back a partly decoded image of a truncated file),
and the decoder that sends 16-bit colour to OpenCV (Pillow would truncate it to 8 bits) and
everything else through the shared Pillow path. Writing: chunk building, iCCP/eXIf insertion into
files OpenCV encoded, and the 16-bit grey+alpha encoder that neither Pillow nor OpenCV provides.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL.PngImagePlugin import PngImageFile

from srtool.imageio.decode import _Bad, _check_size, _cv2_decode16, _from_pillow
from srtool.imageio.exif import _EXIF_HEADER, _normalise_exif, _orient
from srtool.imageio.formats import PNG_COMPRESS_LEVEL
from srtool.imageio.picture import Picture

log = logging.getLogger("srtool")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- reading


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


# --------------------------------------------------------------------------- writing


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
