"""Image files in and out: the only package of srtool that knows file formats.

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
  naming the file and the cause. A PNG whose image data holds fewer rows than its header
  declares is refused, not filled with black. Pillow's own global bomb limit is bypassed by
  opening files through the format plugins directly: ``max_pixels`` is the one limit.
* **Bounded work before the pixels.** Only regular files are opened (a FIFO or device is
  refused at once). The first 64 KiB are read to sniff the format and check the header: the
  pixel limit, and a file-size bound (at most 4 bytes per byte of uncompressed samples the
  header declares, plus 64 MiB of metadata), so a huge or padded file is refused before it is
  read whole. Nothing compressed is inflated without a limit: a PNG's image data is checked as
  a stream holding a megabyte at a time, and an ICC profile that inflates past 16 MiB is
  dropped with a warning, so a decompression bomb costs almost nothing.
* **Quiet decoders.** Pillow's warnings and the messages libpng and libtiff print on stderr
  become debug log lines (:mod:`.quiet`); the file's one error line says what went wrong.
* **Nothing is half-written.** Every write goes to a hidden temporary file in the destination
  folder that is fsynced and renamed over the target; on any failure, Ctrl-C included, the
  temporary file is removed and the target is untouched (:func:`atomic_output`).

Arrays returned by :func:`read_image` are read-only (some are views of one decoded buffer, e.g.
colour and alpha of an RGBA file); take a copy before editing in place.

Modules, each importing only those listed before it (no cycles; nothing imports ``read`` or
``write`` but this file):

* ``picture`` -- :class:`Picture` and the sample conversions;
* ``formats`` -- format names, suffixes, and the defaults (pixel limit, quality, PNG level);
* ``quiet`` -- Python warnings and C libraries' stderr kept off the terminal while decoding;
* ``opencv`` -- OpenCV imported lazily and silenced while decoding;
* ``exif`` -- applying EXIF orientation and resetting it to 1 in the raw block;
* ``decode`` -- what the decoders share: the error, the size check, OpenCV's 16-bit decode and
  the Pillow path;
* ``png``, ``tiff`` -- the byte-level specifics of those formats, for reading and writing;
* ``heif`` -- HEIC/HEIF (pillow-heif) and AVIF (Pillow): container sniffing, size, codecs;
* ``animation`` -- animated GIF/WebP/APNG: a lazy frame-by-frame reader and the encoder;
* ``read`` -- :func:`read_image` and :func:`read_media` (animations too): sniffing and dispatch;
* ``write`` -- :func:`write_image`, :func:`write_animation` and the Pillow/OpenCV encoders.

The public API is re-exported here: import from ``srtool.imageio``, not from the modules.
"""

from __future__ import annotations

from srtool.imageio.animation import Animation, AnimationReader, animation_pixel_limit
from srtool.imageio.formats import (
    ANIMATION_FORMATS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_QUALITY,
    FORMATS,
    PNG_COMPRESS_LEVEL,
    SUPPORTED_SUFFIXES,
    format_for_path,
    list_images,
    suffix_for_format,
)
from srtool.imageio.picture import Picture, as_float, from_float, to_8bit
from srtool.imageio.read import read_image, read_media
from srtool.imageio.write import write_animation, write_image

__all__ = [
    "ANIMATION_FORMATS",
    "Animation",
    "AnimationReader",
    "animation_pixel_limit",
    "read_media",
    "write_animation",
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
    "list_images",
    "suffix_for_format",
]
