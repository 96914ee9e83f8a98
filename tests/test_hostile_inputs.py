"""A generated corpus of hostile and odd files through `srtool upscale`, as a user runs it: a
fresh process under a 3 GB address-space cap and a timeout.

Every file must be reported (done, or failed with one line), the run must end with exit 1 and no
traceback, stderr must hold only srtool's own lines (no libpng/libtiff messages, no Python
warnings), and every output must decode at 4x the upright input in the expected mode and depth.
The corpus is built in a temporary folder, from a 40x30 crop of a test photo: valid files in
every supported mode, corrupt, truncated, empty and random files of every format, decompression
and header bombs, sparse multi-gigabyte files, a device and unicode names. One run covers it all.

Cases that depend on how the batch walks folders and names its temporary files (a FIFO, a
symlink loop, an unreadable folder, 250-byte names) run separately, each with a good file.
"""

from __future__ import annotations

import ctypes
import io
import os
import re
import resource
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_factory import adam7_rows, icc_bomb, ihdr, png, rows
from image_factory import chunk as png_chunk
from PIL import Image

from srtool.imageio import read_image

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTO = REPO_ROOT / "tests" / "data" / "photos" / "coffee.png"
SCALE = 4
MEMORY_CAP = 3 << 30
TIMEOUT = 120

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses Linux rlimits and FIFOs")


def _base() -> np.ndarray:
    with Image.open(PHOTO) as image:
        return np.asarray(image.convert("RGB").crop((200, 150, 240, 180)))  # 40x30


RGB = _base()
GREY = np.asarray(Image.fromarray(RGB).convert("L"))
ALPHA = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))


def _pillow(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _cv2(suffix: str, array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(suffix, array)
    assert ok
    return encoded.tobytes()


def _cmyk_jpeg() -> bytes:
    return _pillow(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=90)


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise: 40x30 on disk, 30x40 upright
    return _pillow(Image.fromarray(RGB), "JPEG", quality=90, exif=exif.tobytes())


def _palette(transparent: bool) -> bytes:
    image = Image.fromarray(RGB).quantize(64)
    return _pillow(image, "PNG", **({"transparency": 0} if transparent else {}))


RGB16 = RGB.astype(np.uint16) * 257 + 3
VALID: dict[str, bytes] = {
    "png": _pillow(Image.fromarray(RGB), "PNG"),
    "jpg": _pillow(Image.fromarray(RGB), "JPEG", quality=90),
    "webp": _pillow(Image.fromarray(RGB), "WEBP", quality=90),
    "tif": _pillow(Image.fromarray(RGB), "TIFF", compression="tiff_lzw"),
    "bmp": _pillow(Image.fromarray(RGB), "BMP"),
    "16.png": _cv2(".png", RGB16[:, :, ::-1]),
    "16.tif": _cv2(".tiff", RGB16[:, :, ::-1]),
}


@dataclass(frozen=True)
class Entry:
    """One corpus file: how to make it and what must become of it."""

    name: str
    make: Callable[[Path], None]
    outcome: str  # "done", "failed" or "either" (garbled data may decode to noise)
    mode: str = "RGB"  # expected output: Pillow mode, or "16-bit N" (N channels, read by OpenCV)
    size: tuple[int, int] = (40, 30)  # upright input size


def data(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def sparse(content: bytes, size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(content)
        with open(path, "r+b") as f:
            f.truncate(size)

    return make


def symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _garbled(content: bytes, seed: int) -> bytes:
    garbled = bytearray(content)
    for at in np.random.default_rng(seed).integers(16, len(content), 8):
        garbled[at] ^= 0xFF
    return bytes(garbled)


def _corpus() -> list[Entry]:
    la = np.dstack((GREY, ALPHA))
    rgba = np.dstack((RGB, ALPHA))
    entries = [
        Entry("modes/rgb.png", data(VALID["png"]), "done"),
        Entry("modes/grey.png", data(_pillow(Image.fromarray(GREY), "PNG")), "done", "L"),
        Entry("modes/rgba.png", data(_pillow(Image.fromarray(rgba), "PNG")), "done", "RGBA"),
        Entry("modes/la.png", data(_pillow(Image.fromarray(la, "LA"), "PNG")), "done", "LA"),
        Entry("modes/palette.png", data(_palette(False)), "done"),
        Entry("modes/palette_trns.png", data(_palette(True)), "done", "RGBA"),
        Entry(
            "modes/bilevel.png",
            data(_pillow(Image.fromarray(GREY).convert("1"), "PNG")),
            "done",
            "L",
        ),
        Entry("modes/deep.png", data(VALID["16.png"]), "done", "16-bit 3"),
        Entry(
            "modes/deep_rgba.png",
            data(_cv2(".png", np.dstack((RGB16[:, :, ::-1], RGB16[:, :, 0])))),
            "done",
            "16-bit 4",
        ),
        Entry("modes/deep_grey.png", data(_cv2(".png", RGB16[:, :, 1])), "done", "16-bit 1"),
        Entry("modes/adam7.png", data(png(RGB, interlace=True)), "done"),
        Entry("modes/photo.jpg", data(VALID["jpg"]), "done"),
        Entry("modes/grey.jpg", data(_pillow(Image.fromarray(GREY), "JPEG")), "done", "L"),
        Entry("modes/cmyk.jpg", data(_cmyk_jpeg()), "done"),
        Entry("modes/rotated.jpg", data(_rotated_jpeg()), "done", size=(30, 40)),
        Entry("modes/photo.webp", data(VALID["webp"]), "done"),
        Entry(
            "modes/alpha.webp",
            data(_pillow(Image.fromarray(rgba), "WEBP", lossless=True)),
            "done",
            "RGBA",
        ),
        Entry("modes/lzw.tif", data(VALID["tif"]), "done"),
        Entry("modes/deep.tif", data(VALID["16.tif"]), "done", "16-bit 3"),
        Entry("modes/photo.bmp", data(VALID["bmp"]), "done"),
        Entry("names/café ☕ 写真 – ünïcödé.png", data(VALID["png"]), "done"),
        Entry("names/ spaces & [brackets] .jpg", data(VALID["jpg"]), "done"),
        # decompression bombs: the profile is dropped, the picture is upscaled
        Entry("bombs/icc.png", data(png(RGB, before_idat=icc_bomb(256))), "done"),
        Entry("bombs/icc16.png", data(png(RGB16, before_idat=icc_bomb(256))), "done", "16-bit 3"),
        Entry("bombs/header.png", data(ihdr_only(60000, 60000)), "failed"),
        Entry("bombs/sparse.png", sparse(b"", 2 << 30), "failed"),
        Entry("bombs/padded.png", sparse(VALID["png"], 2 << 30), "failed"),
        Entry("bombs/padded.jpg", sparse(VALID["jpg"], 1 << 30), "failed"),
        Entry("special/zero.png", symlink("/dev/zero"), "failed"),
        Entry("special/dangling.png", symlink("nowhere.png"), "failed"),
        Entry("junk/random.png", data(np.random.default_rng(1).bytes(5000)), "failed"),
        Entry(
            "junk/random.jpg",
            data(b"\xff\xd8\xff" + np.random.default_rng(2).bytes(5000)),
            "failed",
        ),
        Entry("junk/notes.png", data(b"just some notes, not a picture\n" * 20), "failed"),
        # a GIF named .png: read as the GIF it is (the suffix may lie), written as PNG
        Entry("junk/anim.png", data(_pillow(Image.fromarray(RGB), "GIF")), "done"),
        Entry(
            "short/half.png",
            data(png(RGB, data=zlib.compress(rows(RGB[:15])))),
            "failed",
        ),
        Entry(
            "short/half16.png",
            data(png(RGB16, data=zlib.compress(rows(RGB16[:15])))),
            "failed",
        ),
        Entry(
            "short/adam7.png",
            data(png(RGB, interlace=True, data=zlib.compress(adam7_rows(RGB)[:-100]))),
            "failed",
        ),
    ]
    for ext in ("png", "jpg", "webp", "tif", "bmp"):
        entries.append(Entry(f"empty/empty.{ext}", data(b""), "failed"))
    for kind, content in VALID.items():
        for percent in (5, 50, 90):
            cut = content[: len(content) * percent // 100]
            entries.append(Entry(f"cut/{percent}pct.{kind}", data(cut), "failed"))
        for seed in range(3):
            garbled = _garbled(content, seed)
            entries.append(Entry(f"garbled/{seed}.{kind}", data(garbled), "either"))
    return entries


def ihdr_only(width: int, height: int) -> bytes:
    """A PNG header declaring a huge image over a few bytes of data."""
    idat = png_chunk(b"IDAT", zlib.compress(bytes(100)))
    return b"\x89PNG\r\n\x1a\n" + ihdr(width, height, 8, 2) + idat + png_chunk(b"IEND", b"")


CORPUS = _corpus()


# --------------------------------------------------------------------------- running the CLI


def _limits(drop_dac: bool = False) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if drop_dac and os.geteuid() == 0:  # root reads chmod-000 folders unless it drops these
            libc = ctypes.CDLL(None, use_errno=True)
            for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
                libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP: gone after exec

    return apply


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def status(self, name: str) -> str | None:
        """ "done" or "failed" as the run reported ``name``, None if it never did."""
        if re.search(rf"^\[\d+/\d+\] done {re.escape(name)} -> ", self.stdout, re.M):
            return "done"
        if re.search(rf"^failed {re.escape(name)}: ", self.stderr, re.M):
            return "failed"
        return None


def upscale(source: Path, out: Path, model: Path, *, drop_dac: bool = False) -> Run:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "10000",  # one line per message, however long the names
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "srtool", "upscale", str(source), str(out)]
    command += ["--model", str(model), "--device", "cpu", "--threads", "1"]
    start = time.perf_counter()
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        preexec_fn=_limits(drop_dac),
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


# srtool's own stderr lines; anything else (libpng, libtiff, Python warnings) is noise
_OWN_LINE = re.compile(r"^(failed \S.*|WARNING\s+\S.*|note: .*|\s*)$")


def check_output(path: Path, mode: str, size: tuple[int, int]) -> None:
    """The output decodes fully, at 4x the upright input, in the expected mode and depth."""
    width, height = size[0] * SCALE, size[1] * SCALE
    if mode.startswith("16-bit"):
        channels = int(mode.split()[1])
        array = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        assert array is not None and array.dtype == np.uint16, path
        assert array.shape[:2] == (height, width), (path, array.shape)
        assert (array.shape[2] if array.ndim == 3 else 1) == channels, (path, array.shape)
        return
    with Image.open(path) as image:
        image.load()
        assert image.size == (width, height), (path, image.size)
        assert image.mode == mode, (path, image.mode)


# --------------------------------------------------------------------------- the corpus run


@pytest.fixture(scope="module")
def corpus_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_x4: Path
) -> tuple[Run, Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    source, out = root / "in", root / "out"
    for entry in CORPUS:
        path = source / entry.name
        path.parent.mkdir(parents=True, exist_ok=True)
        entry.make(path)
    return upscale(source, out, tiny_model_x4), source, out


def _as_decoded(path: Path) -> tuple[str, tuple[int, int]]:
    """Expected output mode and size of a file whose decoding is not known in advance (garbled
    data may decode, to noise or at another size): what srtool makes of the input."""
    picture = read_image(path)
    height, width, channels = picture.pixels.shape
    if picture.bit_depth == 16:
        return f"16-bit {channels + (picture.alpha is not None)}", (width, height)
    mode = {1: "L", 3: "RGB"}[channels] + ("A" if picture.alpha is not None else "")
    return mode, (width, height)


def test_corpus_run_ends_cleanly(corpus_run: tuple[Run, Path, Path]) -> None:
    run, _, _ = corpus_run
    assert run.returncode == 1, run.output
    assert "Traceback" not in run.output
    noise = [line for line in run.stderr.splitlines() if not _OWN_LINE.match(line)]
    assert noise == [], noise  # no libpng/libtiff lines, no Python warnings
    reported = [e.name for e in CORPUS if run.status(e.name) is not None]
    assert len(reported) == len(CORPUS), sorted({e.name for e in CORPUS} - set(reported))
    assert run.seconds < TIMEOUT / 2


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_corpus_entry(corpus_run: tuple[Run, Path, Path], entry: Entry) -> None:
    run, source, out = corpus_run
    status = run.status(entry.name)
    assert status is not None, f"{entry.name} was never reported"
    if entry.outcome != "either":
        assert status == entry.outcome, run.output
    target = out / entry.name
    if status == "done":
        mode, size = entry.mode, entry.size
        if entry.outcome == "either":
            mode, size = _as_decoded(source / entry.name)
        check_output(target, mode, size)
    else:
        assert not target.exists()


# --------------------------------------------------------------------------- batch-level cases


def _fifo(folder: Path) -> list[str]:
    os.mkfifo(folder / "pipe.png")
    return ["pipe.png"]


def _symlink_loop(folder: Path) -> list[str]:
    (folder / "loop1.png").symlink_to("loop2.png")
    (folder / "loop2.png").symlink_to("loop1.png")
    return ["loop1.png", "loop2.png"]


def _unreadable_folder(folder: Path) -> list[str]:
    locked = folder / "locked"
    locked.mkdir()
    (locked / "b.png").write_bytes(VALID["png"])
    locked.chmod(0)
    return ["locked"]


def _long_names(folder: Path) -> list[str]:
    names = ["L" * 246 + ".png", "é" * 120 + ".png", "x" * 226 + ".jpg"]  # 250, 244, 230 bytes
    for name in names:
        assert len(name.encode()) <= 255
        (folder / name).write_bytes(VALID["png"])
    return names


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(_fifo, id="fifo"),
        pytest.param(_symlink_loop, id="symlink-loop"),
        pytest.param(_unreadable_folder, id="unreadable-folder"),
        pytest.param(_long_names, id="long-names"),
    ],
)
def test_batch_level_case(tmp_path: Path, tiny_model_x4: Path, case) -> None:
    """Next to the case's files, a good file is always upscaled; each case's files are reported;
    valid ones (long names) are done and decode."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "good.png").write_bytes(VALID["png"])
    names = case(source)
    try:
        run = upscale(source, tmp_path / "out", tiny_model_x4, drop_dac=True)
    finally:
        for path in source.rglob("*"):  # give the test's cleanup its folder back
            if path.is_dir() and not path.is_symlink():
                path.chmod(stat.S_IRWXU)
    assert "Traceback" not in run.output
    assert run.status("good.png") == "done", run.output
    check_output(tmp_path / "out" / "good.png", "RGB", (40, 30))
    if case is _long_names:
        assert run.returncode == 0, run.output
        for name in names:
            assert run.status(name) == "done", run.output
            check_output(tmp_path / "out" / name, "RGB", (40, 30))
        return
    assert run.returncode == 1, run.output
    for name in names:
        assert run.status(name) == "failed" or re.search(
            rf"^failed .*{re.escape(name)}", run.stderr, re.M
        ), run.output
