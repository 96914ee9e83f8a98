"""Animated GIF, animated WebP and APNG: frame by frame in, frame by frame out.

Reading is lazy: :class:`AnimationReader` holds the file's bytes (already bounded by
:func:`~srtool.imageio.read_image`'s header checks) and decodes one full frame at a time, as the
viewer would show it (Pillow composes GIF/APNG disposal and blending; libwebp's animation decoder
does it for WebP), so each frame is independent of how the file stored it. Each frame comes with
its duration; the loop count and ICC profile are kept. The per-frame pixel limit (``max_pixels``)
and a limit on the pixels of all frames together (``max_pixels`` / 4 by default) are checked from
the header before any frame is decoded.

Writing (:func:`write_animation`) takes full 8-bit frames and stores them as the same kind of
animation: every frame is a whole frame (GIF disposal 2 "restore to background", APNG "source"
blending), so nothing depends on what was shown before. GIF frames are quantised one by one to an
adaptive palette of 255 colours without dithering (no crawling noise between frames), index 255
being the transparent one where a frame's alpha is below one half (:func:`gif_frame`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from srtool.imageio.decode import _Bad, _check_size, _read_errors
from srtool.imageio.formats import DEFAULT_MAX_ANIMATION_PIXELS_RATIO
from srtool.imageio.picture import Picture, to_8bit
from srtool.imageio.png import _PNG_SIGNATURE

_GIF_TRANSPARENT = 255
_GIF_PALETTE_SAMPLE = (256, 256)


def animation_pixel_limit(max_pixels: int | None) -> int | None:
    """The most pixels all frames of one animation may hold together."""
    return None if max_pixels is None else max(max_pixels // DEFAULT_MAX_ANIMATION_PIXELS_RATIO, 1)


def _apng_frames(data: bytes) -> int:
    """The frame count of an APNG's acTL chunk (0 for a still PNG), from the chunks before the
    image data."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"acTL" and pos + 12 <= len(data):
            return int.from_bytes(data[pos + 8 : pos + 12], "big")
        if kind in (b"IDAT", b"IEND"):
            return 0
        pos += 12 + length
    return 0


def _webp_animated(head: bytes) -> bool:
    return head[12:16] == b"VP8X" and len(head) > 20 and bool(head[20] & 0x02)


def maybe_animated(head: bytes, fmt: str) -> bool:
    """Whether the first bytes say this file may hold several frames (GIF always may)."""
    if fmt == "gif":
        return True
    if fmt == "webp":
        return _webp_animated(head)
    if fmt == "png":
        return _apng_frames(head) > 1
    return False


@dataclass(eq=False)
class AnimationReader:
    """An animated file, decoded one frame at a time (see the module notes)."""

    format: str  # gif, webp or png
    width: int
    height: int
    frame_count: int
    loop: int | None  # None: no loop field (plays once); 0: forever
    icc_profile: bytes | None
    _data: bytes = field(repr=False)
    path: Path = Path("animation")  # for error messages

    def __iter__(self) -> Iterator[tuple[Picture, int]]:
        """:meth:`frames`, with any decoding problem raised as one :class:`ImageReadError`."""
        frames = self.frames()
        while True:
            with _read_errors(self.path, self.format):
                try:
                    item = next(frames)
                except StopIteration:
                    return
            yield item

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def frames(self) -> Iterator[tuple[Picture, int]]:
        """(full frame as 8-bit RGB or RGB + alpha, duration in ms), in order."""
        with _open(self._data, self.format) as image:
            for index in range(self.frame_count):
                image.seek(index)
                frame = image.convert("RGBA")  # loads it (WebP sets the duration only then)
                duration = int(round(float(image.info.get("duration") or 0)))
                if frame.size != (self.width, self.height):  # a canvas size the header hid
                    raise _Bad(f"frame {index + 1} is {frame.size}, not {self.width}x{self.height}")
                array = np.asarray(frame)
                alpha = array[:, :, 3]
                pixels = array[:, :, :3]
                picture = Picture(
                    pixels,
                    alpha if bool((alpha < 255).any()) else None,
                    8,
                    self.format,
                    self.icc_profile,
                    None,
                )
                yield picture, duration


def _open(data: bytes, fmt: str) -> Image.Image:
    if fmt == "gif":
        from PIL.GifImagePlugin import GifImageFile

        return GifImageFile(io.BytesIO(data))
    if fmt == "webp":
        from PIL.WebPImagePlugin import WebPImageFile

        return WebPImageFile(io.BytesIO(data))
    from PIL.PngImagePlugin import PngImageFile

    return PngImageFile(io.BytesIO(data))


def open_animation(data: bytes, fmt: str, max_pixels: int | None) -> AnimationReader | None:
    """An :class:`AnimationReader` for a file of several frames, None for a single frame. Only
    headers are read here: the frame count and the limits come before any pixel."""
    with _open(data, fmt) as image:
        width, height = image.size
        _check_size(width, height, max_pixels)
        frames = int(getattr(image, "n_frames", 1))
        if frames <= 1:
            return None
        limit = animation_pixel_limit(max_pixels)
        if limit is not None and frames * width * height > limit:
            raise _Bad(
                f"{frames} frames of {width}x{height} = {frames * width * height / 1e6:.1f} MP "
                f"in all, over the animation limit of {limit / 1e6:g} MP "
                "(a quarter of --max-pixels; raise --max-pixels to allow it)"
            )
        loop = image.info.get("loop")
        icc = image.info.get("icc_profile") or None
    return AnimationReader(
        fmt, width, height, frames, None if loop is None else int(loop), icc, data
    )


@dataclass(eq=False)
class Animation:
    """Upscaled frames ready to encode: 8-bit pictures of one size, with their durations."""

    frames: list[Picture]
    durations: list[int]
    loop: int | None
    format: str
    icc_profile: bytes | None = None

    @property
    def width(self) -> int:
        return self.frames[0].width

    @property
    def height(self) -> int:
        return self.frames[0].height

    @property
    def megapixels(self) -> float:
        return sum(f.megapixels for f in self.frames)


def _rgba(picture: Picture) -> Image.Image:
    pixels = to_8bit(picture.pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    if picture.alpha is None:
        alpha = np.full(pixels.shape[:2], 255, np.uint8)
    else:
        alpha = to_8bit(picture.alpha)
    return Image.fromarray(np.ascontiguousarray(np.dstack((pixels, alpha))), "RGBA")


def gif_frame(image: Image.Image) -> tuple[Image.Image, bool]:
    """An RGBA image as a GIF frame: an adaptive palette of 255 colours (median cut on a copy of
    at most 256x256 pixels, which costs a tenth of a second where the full frame would take
    seconds, then every pixel mapped to its nearest colour, without dithering), index 255 where
    alpha < 128. Returns the frame and whether it has transparent pixels."""
    rgba = np.asarray(image.convert("RGBA"))
    rgb = Image.fromarray(np.ascontiguousarray(rgba[:, :, :3]))
    sample = rgb.copy()
    sample.thumbnail(_GIF_PALETTE_SAMPLE, Image.Resampling.BOX)
    chosen = sample.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours = (chosen.getpalette() or [0, 0, 0])[: 3 * 255]
    palette = colours + colours[:3] * (256 - len(colours) // 3)  # spare entries repeat colour 0
    reference = Image.new("P", (1, 1))
    reference.putpalette(palette)
    indices = np.array(rgb.quantize(palette=reference, dither=Image.Dither.NONE))
    indices[indices == _GIF_TRANSPARENT] = 0  # the same colour as entry 0, by construction
    transparent = rgba[:, :, 3] < 128
    indices[transparent] = _GIF_TRANSPARENT
    frame = Image.fromarray(indices, "P")
    frame.putpalette(palette)
    has_transparency = bool(transparent.any())
    if has_transparency:
        frame.info["transparency"] = _GIF_TRANSPARENT
    return frame, has_transparency


def encode_animation(animation: Animation, *, quality: int) -> bytes:
    """The file's bytes, in ``animation.format`` (gif, webp or png = APNG)."""
    fmt = animation.format
    images = [_rgba(frame) for frame in animation.frames]
    durations = [max(int(d), 0) for d in animation.durations]
    params: dict[str, object] = {"save_all": True, "append_images": [], "duration": durations}
    if fmt == "gif":
        frames = [gif_frame(image) for image in images]
        images = [frame for frame, _ in frames]
        params.update(disposal=2, optimize=False)
        if any(transparent for _, transparent in frames):
            params["transparency"] = _GIF_TRANSPARENT
        if animation.loop is not None:
            params["loop"] = animation.loop
        pil_format = "GIF"
    elif fmt == "webp":
        params.update(
            loop=1 if animation.loop is None else animation.loop,
            quality=quality,
            lossless=quality == 100,
            method=4,
            background=(0, 0, 0, 0),
        )
        pil_format = "WEBP"
    elif fmt == "png":
        params.update(loop=1 if animation.loop is None else animation.loop, disposal=0, blend=0)
        pil_format = "PNG"
    else:
        raise _Bad(f"{fmt.upper()} cannot store an animation (GIF, WebP and PNG can)")
    if animation.icc_profile and fmt != "gif":
        params["icc_profile"] = animation.icc_profile
    params["append_images"] = images[1:]
    buffer = io.BytesIO()
    images[0].save(buffer, format=pil_format, **params)
    return buffer.getvalue()
