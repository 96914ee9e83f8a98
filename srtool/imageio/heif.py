"""HEIC/HEIF (through pillow-heif, the libheif binding) and AVIF (Pillow's own plugin): sniffing
the ISO media container, the size from its header, decoding and encoding.

* **Size first.** The coded size is taken from the container's ``ispe`` boxes (the largest one:
  a grid image's full size) in the first 64 KiB, before the rest of the file is read; it bounds
  the file size and, allowing for the coder's padding of up to 64 pixels a side, the pixel
  count. The exact size (after the clean-aperture crop) comes from the decoders' lazy headers
  and is checked against the pixel limit before any pixel is decoded.
* **Depth.** A 10- or 12-bit HEIC becomes a 16-bit picture (libheif hands over the samples;
  they are stretched to the full 16-bit range). Pillow's AVIF decoder returns 8 bits only, so a
  10-bit AVIF becomes an 8-bit picture. A 16-bit picture is written as a 10-bit HEIC; AVIF is
  written with 8 bits.
* **Orientation.** libheif applies the container's rotation and mirroring (``irot``/``imir``),
  which the HEIF specification makes authoritative, so the EXIF orientation is only reset to 1.
  Pillow's AVIF plugin turns ``irot``/``imir`` into an EXIF orientation instead, which is applied
  as for JPEG.
* EXIF and the ICC profile are kept both ways, like JPEG and WebP.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from srtool.imageio.decode import _Bad, _check_size, _from_pillow
from srtool.imageio.exif import _normalise_exif, _orient
from srtool.imageio.picture import Picture

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"heif"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"miaf"})


def _sniff_iso(head: bytes) -> str | None:
    """ "heic" or "avif" from the ``ftyp`` box (major brand, then the compatible brands)."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    if not 16 <= size <= min(len(head), 4096):
        size = min(len(head), 64)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, size - 3, 4)]
    for brand in brands:
        if brand in _AVIF_BRANDS:
            return "avif"
        if brand in _HEIF_BRANDS:
            return "heic"
    if any(b in _GENERIC_BRANDS for b in brands):
        return "heic"  # a generic HEIF image (libheif decodes whatever codec it holds)
    return None


def _iso_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) of the largest ``ispe`` (image spatial extents) box in ``head``, or None
    when the header is not within it (``meta`` after the image data)."""
    best: tuple[int, int] | None = None
    start = 0
    while True:
        at = head.find(b"ispe", start)
        if at < 4 or at + 16 > len(head):
            return best
        start = at + 4
        if int.from_bytes(head[at - 4 : at], "big") != 20:  # size of an ispe box
            continue
        width = int.from_bytes(head[at + 8 : at + 12], "big")
        height = int.from_bytes(head[at + 12 : at + 16], "big")
        if best is None or width * height > best[0] * best[1]:
            best = (width, height)


def _heif():  # noqa: ANN202 - the module
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a declared dependency
        raise _Bad("HEIC needs the pillow-heif package (pip install pillow-heif)") from None
    return pillow_heif


def _decode_heif(data: bytes, max_pixels: int | None) -> Picture:
    heif = _heif().open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    width, height = heif.size
    _check_size(width, height, max_pixels)
    mode = heif.mode
    bits = int(heif.info.get("bit_depth") or 8)
    array = np.asarray(heif)  # decodes the primary image
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == np.uint16:
        array = _stretch(array, bits)
        bits = 16
    else:
        bits = 8
    if mode.startswith(("RGBA", "LA")):
        pixels, alpha = array[:, :, :-1], array[:, :, -1]
    else:
        pixels, alpha = array, None
    exif, _ = _normalise_exif(heif.info.get("exif"))  # libheif has already rotated
    icc = heif.info.get("icc_profile") or None
    pixels, alpha = _orient(pixels, alpha, 1)
    return Picture(pixels, alpha, bits, "heic", icc, exif)


def _stretch(array: np.ndarray, bits: int) -> np.ndarray:
    """libheif's high-bit-depth samples (shifted to the top of 16 bits) -> the full 0..65535."""
    if not 8 < bits < 16:
        return array
    shift = 16 - bits
    wide = (array.astype(np.uint32) >> shift) * 65535
    wide += (1 << bits) // 2 - 1
    wide //= (1 << bits) - 1
    return wide.astype(np.uint16)


def _decode_avif(data: bytes, max_pixels: int | None) -> Picture:
    try:
        from PIL.AvifImagePlugin import AvifImageFile
    except ImportError:  # Pillow < 11.3 or built without libavif
        raise _Bad("this Pillow build cannot decode AVIF (Pillow 11.3 or newer has it)") from None
    with AvifImageFile(io.BytesIO(data)) as image:  # header only until load()
        _check_size(image.width, image.height, max_pixels)
        exif, orientation = _normalise_exif(image.info.get("exif"))
        icc = image.info.get("icc_profile") or None
        return _from_pillow(image, fmt="avif", bits=8, icc=icc, exif=exif, orientation=orientation)


def _write_heif(
    path: Path,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
    quality: int,
) -> bytes:
    """The encoded HEIC (8-bit, or 10-bit from 16-bit samples); grey is written as RGB."""
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    planes = pixels if alpha is None else np.dstack((pixels, alpha))
    mode = "RGBA" if alpha is not None else "RGB"
    if planes.dtype == np.uint16:
        mode += ";16"
    planes = np.ascontiguousarray(planes)
    heif = _heif().from_bytes(
        mode=mode, size=(planes.shape[1], planes.shape[0]), data=planes.tobytes()
    )
    params: dict[str, object] = {"quality": -1 if quality == 100 else quality}
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    buffer = io.BytesIO()
    heif.save(buffer, **params)
    return buffer.getvalue()


def _avif_image(image: Image.Image) -> Image.Image:
    """AVIF has no grey mode in Pillow's encoder: grey becomes RGB(A)."""
    if image.mode in ("L", "LA"):
        return image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image
