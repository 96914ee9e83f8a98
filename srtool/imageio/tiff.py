"""TIFF specifics, in both directions.

Reading: bit depth and sample format from the tags (floating-point and 32-bit samples refused),
16-bit RGB(A) through OpenCV with the orientation tag patched to 1 first (so it is applied exactly
once), and of the file's own tags only the descriptive ones carried over, as a portable EXIF
block. Writing: a new first directory that adds the ICC profile, the descriptive tags and the
Exif and GPS sub-directories that OpenCV's TIFF writer cannot store.
"""

from __future__ import annotations

import logging
import struct
from typing import BinaryIO

from PIL import Image
from PIL.TiffImagePlugin import TiffImageFile

from srtool.imageio.decode import _Bad, _cv2_decode16, _from_pillow, _pillow_bomb_warning_off
from srtool.imageio.exif import _ORIENTATION_TAG, _orient
from srtool.imageio.picture import Picture
from srtool.imageio.quiet import _quiet_stderr

log = logging.getLogger("srtool")

_TIFF_KEPT_IFD0_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432)  # description, make, model, ...


# --------------------------------------------------------------------------- reading

_TIFF_MAX_ENTRIES = 4096  # tags in one directory; real files have a few dozen


def _tiff_header(file: BinaryIO, size: int) -> tuple[int, int, int]:
    """(width, height, bytes of uncompressed samples) from the first directory, read with a few
    small seeks (the directory may sit anywhere in the file, often at its end) before the file
    is read."""

    def read(offset: int, count: int) -> bytes:
        if offset < 0 or offset + count > size:
            raise _Bad("truncated TIFF (a directory lies beyond the end of the file)")
        file.seek(offset)
        chunk = file.read(count)
        if len(chunk) != count:
            raise _Bad("truncated TIFF (the file ends inside a directory)")
        return chunk

    head = read(0, 16) if size >= 16 else read(0, 8)
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        if len(head) < 16:
            raise _Bad("truncated TIFF (the file ends inside the header)")
        (first,) = struct.unpack_from(order + "Q", head, 8)
        (count,) = struct.unpack(order + "Q", read(first, 8))
        entry_size, value_size, start = 20, 8, first + 8
    else:
        (first,) = struct.unpack_from(order + "I", head, 4)
        (count,) = struct.unpack(order + "H", read(first, 2))
        entry_size, value_size, start = 12, 4, first + 2
    if count > _TIFF_MAX_ENTRIES:
        raise _Bad(f"corrupt TIFF ({count} tags in the first directory)")
    entries = read(start, count * entry_size)
    unit = {1: "B", 3: "H", 4: "I", 16: "Q"}
    tags: dict[int, int] = {}
    for index in range(count):
        at = index * entry_size
        tag, kind = struct.unpack_from(order + "HH", entries, at)
        if tag not in (256, 257, 258, 277) or kind not in unit:
            continue
        number = struct.unpack_from(order + ("Q" if big else "I"), entries, at + 4)[0]
        item = struct.calcsize(unit[kind])
        if number < 1:
            continue
        if number * item <= value_size:
            value = entries[at + entry_size - value_size : at + entry_size - value_size + item]
        else:  # stored elsewhere (e.g. BitsPerSample of RGB): the first value is enough
            (offset,) = struct.unpack_from(
                order + ("Q" if big else "I"), entries, at + entry_size - value_size
            )
            value = read(offset, item)
        tags[tag] = struct.unpack(order + unit[kind], value)[0]
    if 256 not in tags or 257 not in tags:
        raise _Bad("corrupt TIFF (no image size in the first directory)")
    width, height = tags[256], tags[257]
    bits_per_pixel = max(1, tags.get(277, 1)) * max(1, tags.get(258, 1))
    return width, height, (width * bits_per_pixel + 7) // 8 * height


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
    with _pillow_bomb_warning_off(image.width, image.height), _quiet_stderr():
        image.load()  # libtiff prints its complaints about a broken file on stderr
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


# --------------------------------------------------------------------------- writing


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
