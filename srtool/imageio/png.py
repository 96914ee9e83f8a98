"""PNG at the byte level, in both directions.

Reading: the chunk walk that takes the header fields, iCCP (inflated to at most
:data:`MAX_ICC_BYTES`) and eXIf and proves the file complete before anything is decoded (OpenCV
would hand back a partly decoded image of a truncated file); a streaming check that the image
data holds every row the header declares, each with a valid filter type (Pillow fills missing
rows with black); and the decoder that sends 16-bit colour to OpenCV (Pillow would truncate it
to 8 bits), given only the chunks it needs, and everything else through the shared Pillow path.
Writing: :func:`encode_png`, srtool's own encoder for every PNG it writes (grey, grey+alpha, RGB
and RGBA at 8 and 16 bits, with iCCP and eXIf): row filtering in numpy, deflate by ISA-L (zlib-ng
where ISA-L has no wheels).
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL.PngImagePlugin import PngImageFile

from srtool.imageio.decode import _Bad, _check_size, _cv2_decode16, _from_pillow
from srtool.imageio.exif import _EXIF_HEADER, _normalise_exif, _orient
from srtool.imageio.formats import PNG_COMPRESS_LEVEL
from srtool.imageio.picture import Picture

try:  # Intel's ISA-L: 2.8x zlib-ng's deflate speed on upscaled photos for files 1 % larger
    from isal import isal_zlib as _deflate_lib
except ImportError:  # machines for which isal ships no wheel (it is x86-64 and Arm only)
    from zlib_ng import zlib_ng as _deflate_lib

DEFLATE_ERROR: type[Exception] = _deflate_lib.error
"""What the PNG deflater and inflater raise (neither ISA-L's nor zlib-ng's error is a
``zlib.error``)."""

log = logging.getLogger("srtool")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- reading

MAX_ICC_BYTES = 16 << 20
"""An iCCP profile that inflates to more than this is dropped with a warning (the image itself
is still read). 16 MiB is above the most a JPEG can carry (255 x 64 KiB segments) and far above
real profiles (a few KiB to a few MiB); the cap is what keeps a 1 MB file from inflating to
gigabytes."""

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_INFLATE_IN = 1 << 16  # compressed bytes fed to zlib at a time
_INFLATE_OUT = 1 << 20  # most inflated bytes held at a time


@dataclass
class _PngInfo:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool
    icc: bytes | None = None
    exif: bytes | None = None
    idat: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each IDAT body
    compressed_extras: bool = False  # iCCP/zTXt/iTXt: Pillow would inflate them again

    @property
    def raw_bytes(self) -> int:
        """Size of the uncompressed samples, as stored (before any palette expansion)."""
        bits_per_pixel = _CHANNELS[self.colour_type] * self.bit_depth
        return (self.width * bits_per_pixel + 7) // 8 * self.height


def _png_header(data: bytes) -> _PngInfo:
    """The IHDR fields, from the first 33 bytes; raises on anything a decoder would reject."""
    if len(data) < 16:
        raise _Bad("truncated PNG (the file ends before the IEND chunk)")
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR":
        raise _Bad("corrupt PNG (IHDR is not the first chunk)")
    if length != 13:
        raise _Bad("corrupt PNG (bad IHDR chunk)")
    if len(data) < 33:
        raise _Bad("truncated PNG (the file ends inside a IHDR chunk)")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", data, 16
    )
    if depth not in _DEPTHS.get(colour, ()):
        raise _Bad(f"corrupt PNG (bit depth {depth} with colour type {colour} in the header)")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise _Bad("corrupt PNG (unknown compression, filter or interlace method in the header)")
    return _PngInfo(width, height, depth, colour, interlace == 1)


def _png_info(data: bytes, name: str = "") -> _PngInfo:
    """Walk the chunk list: header fields, iCCP and eXIf, where the image data lies, and proof
    that the file is complete (OpenCV would otherwise hand back a partly decoded image of a
    truncated file). Nothing here inflates more than :data:`MAX_ICC_BYTES`."""
    info = _png_header(data)
    pos = len(_PNG_SIGNATURE)
    icc_seen = False
    while True:
        if pos + 8 > len(data):
            raise _Bad("truncated PNG (the file ends before the IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise _Bad(f"truncated PNG (the file ends inside a {kind.decode('latin-1')} chunk)")
        if kind == b"IHDR":
            if pos != len(_PNG_SIGNATURE):
                raise _Bad("corrupt PNG (a second IHDR chunk)")
        elif kind == b"IDAT":
            info.idat.append((pos + 8, pos + 8 + length))
        elif kind == b"iCCP":
            if not icc_seen:  # only the first: each one may inflate to the cap
                info.icc = _icc_from_chunk(data[pos + 8 : pos + 8 + length], name)
            icc_seen = info.compressed_extras = True
        elif kind in (b"zTXt", b"iTXt"):
            info.compressed_extras = True  # text is not kept; nobody inflates it
        elif kind == b"eXIf":
            info.exif = data[pos + 8 : pos + 8 + length]
        elif kind == b"IEND":
            break
        pos = end
    if not info.idat:
        raise _Bad("corrupt PNG (no image data)")
    return info


def _icc_from_chunk(body: bytes, name: str) -> bytes | None:
    """The profile of an iCCP chunk, inflated to at most :data:`MAX_ICC_BYTES`."""
    name_end = body.find(b"\x00")
    if name_end < 0:
        return None
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(body[name_end + 2 :], MAX_ICC_BYTES + 1)
    except zlib.error:
        log.debug("%s: ignoring an undecodable iCCP chunk", name)
        return None
    if len(profile) > MAX_ICC_BYTES:
        log.warning(
            "%s: ICC profile inflates to more than %d MiB (a decompression bomb?); not used",
            name,
            MAX_ICC_BYTES >> 20,
        )
        return None
    if not inflater.eof:
        log.debug("%s: ignoring a truncated iCCP chunk", name)
        return None
    return profile or None


def _row_runs(info: _PngInfo) -> list[tuple[int, int, int]]:
    """Where the filter bytes lie in the inflated image data: (first, end, stride) per pass."""
    passes = _ADAM7 if info.interlaced else ((0, 0, 1, 1),)
    bits_per_pixel = _CHANNELS[info.colour_type] * info.bit_depth
    runs, pos = [], 0
    for x0, y0, dx, dy in passes:
        columns = (info.width - x0 + dx - 1) // dx
        rows = (info.height - y0 + dy - 1) // dy
        if columns <= 0 or rows <= 0:
            continue  # an empty pass has no bytes at all, not even filter bytes
        stride = 1 + (columns * bits_per_pixel + 7) // 8
        runs.append((pos, pos + rows * stride, stride))
        pos += rows * stride
    return runs


def _check_image_data(data: bytes, info: _PngInfo) -> None:
    """Inflate the image data as a stream, holding at most a megabyte of it, and check that it
    holds every row the header promises, each with a valid filter type. Pillow fills the rows
    of a short stream with black and calls the image complete; libpng prints errors."""
    runs = _row_runs(info)
    expected = runs[-1][1] if runs else 0
    inflater = _deflate_lib.decompressobj()  # ISA-L inflates 2.2x faster than zlib
    done = 0
    view = memoryview(data)
    try:
        for start, end in info.idat:
            for at in range(start, end, _INFLATE_IN):
                piece: bytes | memoryview = view[at : min(at + _INFLATE_IN, end)]
                while True:
                    out = inflater.decompress(piece, _INFLATE_OUT)
                    _check_filters(out, done, runs)
                    done += len(out)
                    if done >= expected or inflater.eof:
                        break
                    piece = inflater.unconsumed_tail
                    if not piece and len(out) < _INFLATE_OUT:
                        break  # this piece is used up
                if done >= expected or inflater.eof:
                    break
            if done >= expected or inflater.eof:
                break
    except (zlib.error, DEFLATE_ERROR) as exc:
        raise _Bad(f"corrupt PNG (image data: {exc})") from None
    if done < expected:
        if info.interlaced:
            raise _Bad(
                f"truncated PNG (the interlaced image data ends at {100 * done // expected}% "
                "of the image)"
            )
        stride = runs[0][2]
        raise _Bad(
            f"truncated PNG (the image data ends after {done // stride} of {info.height} rows)"
        )


def _check_filters(out: bytes, offset: int, runs: list[tuple[int, int, int]]) -> None:
    """Every row starts with a filter type byte, 0-4."""
    if not out:
        return
    end = offset + len(out)
    samples = None
    for first, stop, stride in runs:
        if stop <= offset or first >= end:
            continue
        lo = first + -(-max(offset - first, 0) // stride) * stride
        if lo >= min(stop, end):
            continue
        if samples is None:
            samples = np.frombuffer(out, np.uint8)
        found = samples[lo - offset : min(stop, end) - offset : stride]
        if found.size and int(found.max()) > 4:
            raise _Bad(f"corrupt PNG (unknown row filter type {int(found.max())})")


def _png_for_opencv(data: bytes, info: _PngInfo) -> bytes:
    """Only what libpng needs to decode the pixels (IHDR, tRNS of an RGB image, IDAT, IEND),
    checksums verified: libpng prints its complaints about anything else to stderr, and the
    metadata is read here anyway. Without eXIf, OpenCV cannot rotate the image itself either."""
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        keep = kind in (b"IHDR", b"IDAT") or (
            kind == b"tRNS" and info.colour_type == 2 and length == 6
        )
        if keep:
            (crc,) = struct.unpack_from(">I", data, end - 4)
            if zlib.crc32(memoryview(data)[pos + 4 : end - 4]) != crc:
                raise _Bad(f"corrupt PNG (bad checksum in the {kind.decode('latin-1')} chunk)")
            out.append(data[pos:end])
        if kind == b"IEND":
            break
        pos = end
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _png_without(data: bytes, kinds: frozenset[bytes]) -> bytes:
    out = [data[:8]]
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if data[pos + 4 : pos + 8] not in kinds:
            out.append(data[pos:end])
        pos = end
    return b"".join(out)


def _decode_png(data: bytes, max_pixels: int | None, name: str = "") -> Picture:
    info = _png_info(data, name)
    _check_size(info.width, info.height, max_pixels)
    _check_image_data(data, info)
    exif, orientation = _normalise_exif(info.exif)
    if info.bit_depth == 16 and info.colour_type in (2, 4, 6):
        # RGB, grey+alpha and RGBA at 16 bits: Pillow would truncate them to 8. OpenCV gets the
        # pixels only, so it rotates nothing itself: we rotate exactly once.
        pixels, alpha = _cv2_decode16(_png_for_opencv(data, info), grey=info.colour_type == 4)
        pixels, alpha = _orient(pixels, alpha, orientation)
        return Picture(pixels, alpha, 16, "png", info.icc, exif)
    if info.compressed_extras:  # read above, within bounds; Pillow need not inflate them again
        data = _png_without(data, frozenset((b"iCCP", b"zTXt", b"iTXt")))
    with PngImageFile(io.BytesIO(data)) as image:
        return _from_pillow(
            image, fmt="png", bits=info.bit_depth, icc=info.icc, exif=exif, orientation=orientation
        )


# --------------------------------------------------------------------------- writing


PNG_IDAT_BYTES = 8 << 20
"""Compressed image data goes into IDAT chunks of about this size (one strip of rows more at
most), so the encoder never copies the whole compressed image to build one chunk."""

_ENCODE_ROWS = 64
"""Rows filtered and deflated at a time: the encoder's temporaries stay a few hundred KiB whatever
the image size, and in the CPU cache."""

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> grey, grey+alpha, RGB, RGBA


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = _deflate_lib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _metadata_chunks(icc: bytes | None, exif: bytes | None) -> bytes:
    """iCCP and eXIf chunks, which go right after IHDR (before any PLTE/IDAT, as the spec
    requires)."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        body = exif[len(_EXIF_HEADER) :] if exif.startswith(_EXIF_HEADER) else exif
        extra += _png_chunk(b"eXIf", body)
    return extra


def encode_png(
    pixels: np.ndarray,
    alpha: np.ndarray | None = None,
    icc: bytes | None = None,
    exif: bytes | None = None,
) -> bytes:
    """PNG bytes of ``pixels`` (H, W, 1 or 3; uint8 or uint16) with optional ``alpha`` (H, W, 1 or
    H, W, same dtype): grey, grey+alpha, RGB or RGBA at 8 or 16 bits, with an iCCP and an eXIf
    chunk when given.

    Every row uses the Average filter (the mean of the left and upper neighbours predicts each
    byte), computed in numpy on :data:`_ENCODE_ROWS` rows at a time, and the filtered rows are
    deflated by ISA-L at :data:`~srtool.imageio.formats.PNG_COMPRESS_LEVEL` (the trade of speed
    against size is measured there). ISA-L and numpy release the GIL, so encoders in threads run
    in parallel. PNG is lossless whatever the settings.
    """
    height, width, channels = pixels.shape
    if alpha is not None and alpha.ndim == 2:
        alpha = alpha[:, :, None]
    samples = channels + (0 if alpha is None else 1)
    depth = 16 if pixels.dtype == np.uint16 else 8
    bytes_per_pixel = samples * depth // 8
    row_bytes = width * bytes_per_pixel
    deflate = _deflate_lib.compressobj(PNG_COMPRESS_LEVEL, _deflate_lib.DEFLATED, 15)
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPES[samples], 0, 0, 0)
    chunks = [_PNG_SIGNATURE, _png_chunk(b"IHDR", header), _metadata_chunks(icc, exif)]
    pending: list[bytes] = []  # compressed bytes not yet in an IDAT chunk

    def add(data: bytes, last: bool = False) -> None:
        pending.append(data)
        if last or sum(map(len, pending)) >= PNG_IDAT_BYTES:
            chunks.append(_png_chunk(b"IDAT", b"".join(pending)))
            pending.clear()

    filtered = np.empty((min(_ENCODE_ROWS, height), row_bytes + 1), dtype=np.uint8)
    filtered[:, 0] = 3  # filter type Average
    above = np.zeros(row_bytes, dtype=np.uint8)
    for top in range(0, height, _ENCODE_ROWS):
        rows = _row_bytes(pixels, alpha, top, depth)
        count = rows.shape[0]
        _average_filter(rows, above, bytes_per_pixel, filtered[:count, 1:])
        add(deflate.compress(filtered[:count]))
        above = rows[-1].copy()
    add(deflate.flush(), last=True)
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def _row_bytes(pixels: np.ndarray, alpha: np.ndarray | None, top: int, depth: int) -> np.ndarray:
    """Rows ``top`` to ``top + _ENCODE_ROWS`` as PNG stores them: samples interleaved (alpha
    last), 16-bit samples big-endian; shape (rows, width * bytes per pixel), uint8."""
    block = pixels[top : top + _ENCODE_ROWS]
    count, width = block.shape[:2]
    if alpha is not None:
        block = np.concatenate((block, alpha[top : top + _ENCODE_ROWS]), axis=2)
    if depth == 16:
        block = block.astype(">u2", copy=False)
    return np.ascontiguousarray(block).view(np.uint8).reshape(count, -1)


def _average_filter(
    rows: np.ndarray, above: np.ndarray, bytes_per_pixel: int, out: np.ndarray
) -> None:
    """PNG's Average filter of ``rows`` (uint8, one image row each; ``above`` is the row before
    the first, zeros at the top of the image) into ``out``: each byte minus the floor of the mean
    of the byte one pixel to the left (0 in the first pixel) and the byte above, modulo 256."""
    up = np.empty_like(rows)
    up[0] = above
    up[1:] = rows[:-1]
    left = rows[:, :-bytes_per_pixel]
    prediction = up >> 1
    # floor((l + u) / 2) in 8 bits: (l >> 1) + (u >> 1) + (l & u & 1), which cannot overflow
    prediction[:, bytes_per_pixel:] += left >> 1
    prediction[:, bytes_per_pixel:] += left & up[:, bytes_per_pixel:] & 1
    np.subtract(rows, prediction, out=out)
