"""EXIF orientation: applying it to decoded pixels and resetting it to 1 in the raw EXIF block.

Photos come out upright: every decoder rotates with the semantics of
``PIL.ImageOps.exif_transpose`` and returns EXIF that says orientation 1, so a viewer that honours
the tag does not rotate the result a second time. The value is patched in the raw bytes, so the
rest of the block (maker notes with absolute offsets included) is kept byte for byte. The writer
normalises EXIF once more, for pictures built elsewhere.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import numpy as np

log = logging.getLogger("srtool")

_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112


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
