"""Keeping the decoders' own chatter off the user's terminal.

A broken file is reported once, by :func:`~srtool.imageio.read_image`, as one
:class:`~srtool.errors.ImageReadError` line. The libraries underneath have their own ways of
complaining, and none of them belongs on stderr next to srtool's lines:

* **Python warnings** from Pillow ("Corrupt EXIF data", "Truncated File Read", "Tag data larger
  than file") are routed to the ``srtool`` logger at debug level while the calling thread is
  decoding (:func:`_warnings_to_debug`). Other threads' warnings, and this thread's outside a
  decode, are shown as before. Warnings turned into errors by a filter still raise.
* **C libraries writing to file descriptor 2**: libtiff inside Pillow ("tempfile.tif: Using code
  not yet in table.") and libpng inside OpenCV ("libpng error: ..."). Around those calls,
  :func:`_quiet_stderr` points descriptor 2 at a pipe; a drain thread drops the lines that have
  the shape of these libraries' messages (logged at debug level) and passes everything else
  through to the real stderr at once, so another thread's output written meanwhile is neither
  lost nor held back. The redirection is process-wide, hence counted under a lock: concurrent
  decoders share one pipe, and the last one out restores descriptor 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("srtool")

# --------------------------------------------------------------------------- Python warnings

_decoding = threading.local()
_hook_lock = threading.Lock()


def _install_warning_hook() -> None:
    """Wrap ``warnings.showwarning`` (documented as replaceable) once; re-wrap if someone else
    replaced it since. The wrapper defers to whatever was there for every warning it does not
    claim."""
    with _hook_lock:
        current = warnings.showwarning
        if getattr(current, "_srtool_hook", False):
            return

        def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            where = getattr(_decoding, "name", None)
            if where is not None:
                log.debug("%s: %s from the decoder: %s", where, category.__name__, message)
                return
            current(message, category, filename, lineno, file, line)

        showwarning._srtool_hook = True  # type: ignore[attr-defined]
        warnings.showwarning = showwarning


@contextmanager
def _warnings_to_debug(name: str) -> Iterator[None]:
    """While this thread decodes ``name``, its warnings become debug log lines."""
    _install_warning_hook()
    previous = getattr(_decoding, "name", None)
    _decoding.name = name
    try:
        yield
    finally:
        _decoding.name = previous


# --------------------------------------------------------------------------- C-level stderr

# The shapes of the messages libpng, libtiff and OpenCV print: "libpng error: ...",
# "libpng warning: ...", libtiff's "<module>: <text>." (module: a function such as
# TIFFReadDirectory or LZWDecode, or Pillow's "tempfile.tif") and OpenCV's "[ WARN:0@1.2] ...".
# srtool's own lines never take these shapes ("failed NAME: ...", "error: ...", "[3/9] done").
_NOISE = re.compile(
    rb"^(libpng (error|warning): "
    rb"|\[ ?(WARN|ERROR|INFO|DEBUG|FATAL|VERBOSE)[:\]\s@0-9.]"
    rb"|(?!(error|note|warning)\b)[A-Za-z_][A-Za-z0-9_]*(\.tiff?)?: .*\.\s*$"
    rb"|\S*\.tiff?: .*\.\s*$)"  # libtiff names the file it writes: "<path>.tif: Error ..."
)
_MAX_LINE = 1 << 16
_LOGGED_PER_WINDOW = 20


class _Capture:
    """One redirection of descriptor 2 to a pipe, and the thread that filters it."""

    def __init__(self) -> None:
        self.saved = os.dup(2)  # OSError: no stderr at all, nothing to protect
        try:
            self.read_fd, self.write_fd = os.pipe()
        except OSError:
            os.close(self.saved)
            raise
        self.dropped: list[bytes] = []
        self.drain = threading.Thread(target=self._drain, name="srtool-stderr-filter", daemon=True)
        self.drain.start()
        _flush_python_stderr()
        try:
            os.dup2(self.write_fd, 2)
        except OSError:
            os.close(self.write_fd)
            self.drain.join()
            os.close(self.saved)
            raise

    def _drain(self) -> None:
        pending = b""
        with os.fdopen(self.read_fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(_MAX_LINE)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                pieces = [line + b"\n" for line in lines]
                if pending and (not chunk or len(pending) > _MAX_LINE):
                    pieces.append(pending)  # an unterminated tail: passed on as it is
                    pending = b""
                for piece in pieces:
                    if _is_noise(piece.rstrip(b"\r\n")):
                        self.dropped.append(piece.strip())
                    else:
                        _write_all(self.saved, piece)
                if not chunk:
                    return

    def close(self) -> None:
        _flush_python_stderr()
        os.dup2(self.saved, 2)
        os.close(self.write_fd)  # the drain sees end of file: fd 2 no longer points at the pipe
        self.drain.join(timeout=2)  # longer only if a child process inherited the pipe
        if self.drain.is_alive():
            return
        os.close(self.saved)
        for line in self.dropped[:_LOGGED_PER_WINDOW]:
            log.debug("decoder message: %s", line.decode("utf-8", "replace"))
        if len(self.dropped) > _LOGGED_PER_WINDOW:
            log.debug("%d more decoder messages", len(self.dropped) - _LOGGED_PER_WINDOW)


def _is_noise(line: bytes) -> bool:
    if _PYTHON_ERROR.match(line):
        return False  # the last line of a traceback printed by another thread
    return _NOISE.match(line) is not None


_PYTHON_ERROR = re.compile(rb"^[A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt|Exit)\b")


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


def _flush_python_stderr() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


_stderr_lock = threading.Lock()
_stderr_users = 0
_capture: _Capture | None = None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Keep libpng/libtiff/OpenCV messages printed on descriptor 2 off the terminal while the
    body runs; everything else written to stderr meanwhile still gets there."""
    global _stderr_users, _capture
    with _stderr_lock:
        if _stderr_users == 0:
            try:
                _capture = _Capture()
            except OSError:
                _capture = None
        _stderr_users += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_users -= 1
            if _stderr_users == 0 and _capture is not None:
                capture, _capture = _capture, None
                capture.close()
