"""Hand-built PNG files for tests that need what no encoder writes: short or bad image data,
interlacing, decompression bombs, chunks in odd places."""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, ...)
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ihdr(width: int, height: int, depth: int, colour: int, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def rows(pixels: np.ndarray) -> bytes:
    """Image data before compression: each row with filter type 0 (None), samples big-endian."""
    array = pixels if pixels.ndim == 3 else pixels[:, :, None]
    height = array.shape[0]
    samples = array.astype(">u2" if array.dtype == np.uint16 else np.uint8).reshape(height, -1)
    raw = samples.view(np.uint8).reshape(height, -1)
    return np.hstack([np.zeros((height, 1), np.uint8), raw]).tobytes()


def adam7_rows(pixels: np.ndarray) -> bytes:
    """Image data of an Adam7-interlaced PNG: the seven passes one after another."""
    array = pixels if pixels.ndim == 3 else pixels[:, :, None]
    return b"".join(
        rows(array[y0::dy, x0::dx])
        for x0, y0, dx, dy in ADAM7
        if array[y0::dy, x0::dx].size  # an empty pass has no bytes at all
    )


def png(
    pixels: np.ndarray,
    *,
    data: bytes | None = None,
    interlace: bool = False,
    before_idat: bytes = b"",
    idat_size: int | None = None,
) -> bytes:
    """A PNG of ``pixels`` (HxW or HxWxC, uint8 or uint16). ``data`` replaces the compressed
    image data (e.g. a stream that is too short); ``idat_size`` splits it over many IDAT
    chunks; ``before_idat`` is inserted after IHDR."""
    array = pixels if pixels.ndim == 3 else pixels[:, :, None]
    height, width, channels = array.shape
    depth = 16 if array.dtype == np.uint16 else 8
    if data is None:
        data = zlib.compress(adam7_rows(array) if interlace else rows(array))
    step = idat_size or len(data)
    idats = b"".join(chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    header = ihdr(width, height, depth, COLOUR_TYPES[channels], int(interlace))
    return PNG_SIGNATURE + header + before_idat + idats + chunk(b"IEND", b"")


def zlib_zeros(size_mib: int) -> bytes:
    """A zlib stream that inflates to ``size_mib`` MiB of zeros (about 1 KiB per MiB), built in
    milliseconds: one fully flushed block repeated, then the end block and the checksum."""
    deflate = zlib.compressobj(9)
    first = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = first[2:]  # the same bytes again without the zlib header: the state was reset
    end = deflate.flush()[:-4]  # the final (empty) block, without the checksum
    adler = ((size_mib << 20) % 65521) << 16 | 1  # of zeros: a stays 1, b counts the bytes
    return first + block * (size_mib - 1) + end + struct.pack(">I", adler)


def icc_bomb(size_mib: int) -> bytes:
    """An iCCP chunk whose profile inflates to ``size_mib`` MiB."""
    return chunk(b"iCCP", b"bomb\x00\x00" + zlib_zeros(size_mib))
