"""Atomic writes with two writers of one target, and names near the file system's limit."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from srtool import atomic
from srtool.atomic import (
    atomic_output,
    atomic_write_bytes,
    remove_stale_temporaries,
    temporary_prefix,
)
from srtool.imageio import Picture, read_image, write_image


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def leftover(target: Path, tag: str = "deadbeef0000") -> Path:
    """A temporary file as a killed writer leaves it: nobody holds it."""
    stale = target.with_name(f"{temporary_prefix(target)}{tag}{target.suffix}")
    stale.write_bytes(b"half an image")
    return stale


def test_clearing_leftovers_spares_a_live_writer(tmp_path: Path) -> None:
    """Two writers of one target (two runs into one folder): the second one's clean-up must not
    remove the first one's temporary file while it is being written."""
    target = tmp_path / "photo.png"
    stale = leftover(target)
    with atomic_output(target) as temp:
        temp.write_bytes(b"first ")
        assert remove_stale_temporaries(target) == 1  # the dead writer's file only
        assert temp.exists() and not stale.exists()
        atomic_write_bytes(target, b"second")  # the other writer finishes meanwhile
        with open(temp, "ab") as handle:
            handle.write(b"writer")
    assert target.read_bytes() == b"first writer"
    assert hidden(tmp_path) == []


def test_two_writers_of_one_target_never_fail(tmp_path: Path) -> None:
    """What `srtool upscale`'s writer does for each file, from two threads at once."""
    target = tmp_path / "same.png"
    pictures = [Picture(np.full((48, 64, 3), v, np.uint8)) for v in (10, 200)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(picture: Picture) -> None:
        start.wait()
        try:
            for _ in range(25):
                remove_stale_temporaries(target)
                write_image(target, picture)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in pictures]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert read_image(target).pixels[0, 0, 0] in (10, 200)
    assert hidden(tmp_path) == []


def test_without_locks_only_old_leftovers_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where fcntl is missing (Windows), a leftover is judged by its age."""
    monkeypatch.setattr(atomic, "fcntl", None)
    target = tmp_path / "a.png"
    fresh, old = leftover(target, "000000000001"), leftover(target, "000000000002")
    past = os.stat(old).st_mtime - atomic.STALE_AGE_SECONDS - 60
    os.utime(old, (past, past))
    assert remove_stale_temporaries(target) == 1
    assert fresh.exists() and not old.exists()
    atomic_write_bytes(target, b"x")  # and writing works without locks
    assert target.read_bytes() == b"x"


def test_leftovers_of_other_targets_and_links_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    other = leftover(tmp_path / "b.png")
    link = target.with_name(f"{temporary_prefix(target)}000000000003.png")
    link.symlink_to(other)
    assert remove_stale_temporaries(target) == 0
    assert other.exists() and link.is_symlink()


@pytest.mark.parametrize("name_bytes", [226, 230, 250, 255])
def test_long_names_get_a_temporary_name_that_fits(tmp_path: Path, name_bytes: int) -> None:
    """A legal output name (up to 255 bytes) must be writable: the temporary name is shortened
    when `.{name}.srtool-tmp-<12 hex>{suffix}` would not fit."""
    target = tmp_path / ("L" * (name_bytes - 4) + ".png")
    with atomic_output(target) as temp:
        assert len(os.fsencode(temp.name)) <= 255
        assert temp.name.startswith(".") and temp.suffix == ".png"
        temp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    write_image(target, Picture(np.zeros((4, 4, 3), np.uint8)))
    assert read_image(target).pixels.shape == (4, 4, 3)
    stale = leftover(target)  # and a killed write of it is found again
    assert len(os.fsencode(stale.name)) <= 255
    assert remove_stale_temporaries(target) == 1 and hidden(tmp_path) == []


def test_long_multibyte_name(tmp_path: Path) -> None:
    target = tmp_path / ("é" * 122 + ".png")  # 248 bytes in UTF-8
    atomic_write_bytes(target, b"ok")
    assert target.read_bytes() == b"ok"
    prefix = temporary_prefix(target)
    assert prefix.encode("utf-8")  # cut on a character boundary: still valid text
    assert prefix != temporary_prefix(tmp_path / ("é" * 121 + "e.png"))  # the hash tells apart
