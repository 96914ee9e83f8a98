"""OpenCV, used here only for the 16-bit colour files Pillow cannot hold (it has no 16-bit RGB(A)
mode: 16-bit PNG in, 16-bit TIFF in and out): imported on first use, since most runs never need
it, and silenced while decoding (its own log here; what libpng and libtiff print on stderr in
:mod:`.quiet`).

OpenCV's log level is process-global, so silencing it is counted under a lock; the decoder that
uses it is :func:`~srtool.imageio.decode._cv2_decode16`, the TIFF encoder is in
:mod:`~srtool.imageio.write`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_cv2_quiet_lock = threading.Lock()
_cv2_quiet_users = 0
_cv2_saved_level: int | None = None


def _cv2():
    import cv2  # imported on first 16-bit file: most runs never need it

    return cv2


@contextmanager
def _quiet_cv2() -> Iterator[object]:
    """Silence OpenCV's stderr logging while decoding (a broken file is reported as an exception
    by us, not as a stray "[ WARN:0] libpng ..." line in the middle of a progress bar). Counted, so
    concurrent decoders restore the level only when the last one finishes."""
    global _cv2_quiet_users, _cv2_saved_level
    cv2 = _cv2()
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:
        yield cv2
        return
    with _cv2_quiet_lock:
        if _cv2_quiet_users == 0:
            _cv2_saved_level = logging_api.getLogLevel()
            logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
        _cv2_quiet_users += 1
    try:
        yield cv2
    finally:
        with _cv2_quiet_lock:
            _cv2_quiet_users -= 1
            if _cv2_quiet_users == 0 and _cv2_saved_level is not None:
                logging_api.setLogLevel(_cv2_saved_level)
