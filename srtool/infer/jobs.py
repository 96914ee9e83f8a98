"""Which files to upscale and where each result goes.

A folder is walked recursively (optionally not), hidden and system files are ignored, and the
output tree mirrors the input tree. An output folder inside the input folder is never walked, and
no output path may be an input file. Only regular files (after following links) are inputs; a
FIFO, a device, a symlink loop or a sub-folder that cannot be read becomes a job that is reported
as failed, so nothing is left out silently and nothing blocks the batch.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from srtool.errors import UsageError
from srtool.imageio import SUPPORTED_SUFFIXES, format_for_path, suffix_for_format
from srtool.infer.video import VIDEO_SUFFIXES, is_video

__all__ = [
    "Job",
    "collect_jobs",
    "check_name_template",
    "input_problem",
    "parse_shard",
    "shard_jobs",
    "in_shard",
    "IGNORED_NAMES",
    "NAME_FIELDS",
    "OUTPUT_FORMATS",
]

IGNORED_NAMES = frozenset(
    {"thumbs.db", "ehthumbs.db", "desktop.ini", ".ds_store", "__macosx", "@eadir", "$recycle.bin"}
)
OUTPUT_FORMATS = ("keep", "png", "jpg", "webp", "tiff", "gif", "heic", "avif")


@dataclass(frozen=True)
class Job:
    """One input file and the output file it becomes (or, with a ``conflict``, an entry of the
    input that is reported as failed: a clash of outputs, a FIFO, an unreadable folder...)."""

    source: Path
    target: Path
    name: str  # the source path relative to the input, for messages
    format: str  # output format: png, jpeg, webp, tiff or bmp; "video" for a video file
    conflict: str | None = None  # why this job cannot run (set when planning)


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _output_format(source: Path, fmt: str) -> str:
    if is_video(source):  # --format is for images: a video stays in its container
        return "video"
    if fmt == "keep":
        return format_for_path(source)
    return format_for_path(Path("x." + fmt))


NAME_FIELDS = ("stem", "ext", "scale", "model")
"""Fields of ``--name``: the input's name without its extension, the output's extension (no dot),
the final size factor (e.g. 4 or 1.5) and the model's name."""


def check_name_template(template: str) -> None:
    """``--name`` is one file name: only known fields, no path separators, no ``..``."""
    if not template.strip():
        raise UsageError("--name must not be empty")
    if "/" in template or "\\" in template or "\0" in template or ".." in template:
        raise UsageError(
            f"--name {template!r}: must be a file name (no '/', '\\', '..' or NUL characters)"
        )
    try:
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as exc:
        raise UsageError(f"--name {template!r}: {exc}") from None
    for field in fields:
        if field not in NAME_FIELDS:
            raise UsageError(
                f"--name {template!r}: unknown field {{{field}}} "
                f"(use {', '.join('{' + f + '}' for f in NAME_FIELDS)})"
            )


def _output_name(
    source: Path,
    fmt: str,
    suffix: str,
    template: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> str:
    if fmt == "keep" or is_video(source):
        ext = source.suffix
    else:
        ext = suffix_for_format(_output_format(source, fmt))
    if template is None:
        return f"{source.stem}{suffix}{ext}"
    if "{ext}" not in template:
        template += ".{ext}"
    values = {"scale": "", "model": "", **(fields or {})}
    values.update(stem=source.stem, ext=ext.lstrip("."))
    try:
        name = template.format(**values)
    except (ValueError, KeyError, IndexError) as exc:
        raise UsageError(f"--name {template!r}: {exc}") from None
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise UsageError(f"--name {template!r} gives {name!r} for {source.name}: not a file name")
    return name


def _resolved(path: Path) -> Path:
    """``path.resolve()``, or its absolute form where a symlink loop stops the resolution."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a symlink loop
        return Path(os.path.abspath(path))


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an input image file, or None for a regular file (links followed).

    A missing file is None too: reading it reports that. A FIFO or a device is refused before
    anything opens it (reading one can block forever or never end).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((what for test, what in _FILE_KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _walk(root: Path, recursive: bool, skip_dir: Path | None) -> list[tuple[Path, OSError | None]]:
    """Files under ``root`` in walk order, and (folder, error) for each folder that could not be
    read, in the place where its files would have been."""
    found: list[tuple[Path, OSError | None]] = []

    def unreadable(exc: OSError) -> None:
        found.append((Path(exc.filename) if exc.filename else root, exc))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if recursive
            and not _ignored(d)
            and (skip_dir is None or _resolved(here / d) != skip_dir)
        )
        found.extend((here / f, None) for f in sorted(files) if not _ignored(f))
    return found


def _check_suffix(suffix: str) -> None:
    """``--suffix`` is a fragment of a file name: it must not lead anywhere else."""
    if "/" in suffix or "\\" in suffix or "\0" in suffix or ".." in suffix:
        raise UsageError(
            f"--suffix {suffix!r}: must be part of a file name "
            "(no '/', '\\', '..' or NUL characters)"
        )


def _check_inside(jobs: list[Job], output: Path) -> None:
    """Every output path lies inside OUTPUT (checked on the paths as written, before links)."""
    root = os.path.normpath(os.path.abspath(output))
    for job in jobs:
        target = os.path.normpath(os.path.abspath(job.target))
        if os.path.commonpath([root, target]) != root:
            raise UsageError(f"{job.name}: its output {job.target} would be outside {output}")


def _matches(path: Path, relative: str, pattern: str | None, extensions: set[str]) -> bool:
    if path.suffix.lower() not in extensions:
        return False
    if pattern is None:
        return True
    return fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(path.name, pattern)


def _left_out_kind(path: Path, pattern: str | None, extensions: set[str] | None) -> str:
    """Why a file of the folder is not an input, as a kind for the summary."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return f"unsupported format {suffix}" if suffix else "unsupported format (no suffix)"
    return "not matching " + " / ".join(
        option for option, given in (("--ext", extensions), ("--glob", pattern)) if given
    )


def collect_jobs(
    source: Path,
    output: Path,
    *,
    recursive: bool = True,
    pattern: str | None = None,
    extensions: set[str] | None = None,
    fmt: str = "keep",
    suffix: str = "",
    unsupported: list[tuple[str, str]] | None = None,
    name: str | None = None,
    name_fields: Mapping[str, str] | None = None,
) -> list[Job]:
    """Plan the batch: one ``Job`` per input image.

    ``source`` is a file or a folder. For a file, ``output`` is the output file when it has an
    image suffix and is not an existing folder, else the folder to write into. Jobs whose output
    would collide with another job's, entries that are not regular files (FIFOs, devices, symlink
    loops) and sub-folders that cannot be read get a ``conflict`` reason and are reported, not run.
    Files of a folder that are left out (every file but hidden and system ones: an unsupported
    format, or not matching ``pattern``/``extensions``) are appended to ``unsupported`` as
    (relative name, kind), e.g. ("a.psd", "unsupported format .psd"), so that nothing is left out
    without a word. A single INPUT file with an OUTPUT whose suffix is not an image suffix is a
    usage error (it would otherwise become a folder named like a file).
    ``name`` is a template for the names of the files written into the OUTPUT folder (instead of
    the input's name plus ``suffix``), with the fields of ``NAME_FIELDS``: ``stem`` and ``ext``
    come from each file, ``name_fields`` gives ``scale`` and ``model``; ``.{ext}`` is appended
    when the template has no ``{ext}``.
    Raises ``UsageError`` for a missing input, a ``suffix`` or ``name`` that is more than a file
    name, or when outputs would overwrite inputs.
    """
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"unknown --format '{fmt}' (choose from {', '.join(OUTPUT_FORMATS)})")
    _check_suffix(suffix)
    if name is not None:
        check_name_template(name)
    fields = dict(name_fields or {})
    if not source.exists():
        raise UsageError(f"input not found: {source}")
    allowed = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions or ()}
    known = SUPPORTED_SUFFIXES | VIDEO_SUFFIXES
    allowed = allowed or set(known)
    unknown = allowed - known
    if unknown:
        raise UsageError(
            f"unsupported extension(s) {', '.join(sorted(unknown))}; "
            f"supported: {', '.join(sorted(known))}"
        )

    if not source.is_dir() and not source.is_file():
        raise UsageError(f"{source}: {input_problem(source) or 'not a file or a folder'}")
    if source.is_file():
        if source.suffix.lower() not in known:
            raise UsageError(f"{source.name}: not a supported image or video type")
        if is_video(source) and output.suffix.lower() in SUPPORTED_SUFFIXES:
            raise UsageError(
                f"{source.name} is a video: its output must be a video file or a folder"
            )
        if not is_video(source) and is_video(output):
            raise UsageError(
                f"{source.name} is an image: its output must be an image file or a folder"
            )
        if output.suffix and not output.is_dir() and output.suffix.lower() not in known:
            raise UsageError(
                f"OUTPUT {output}: {output.suffix} is not an image or video type srtool writes "
                f"({', '.join(sorted(known))}); give a file name with one of these suffixes, "
                "or a folder"
            )
        if is_video(source) and is_video(output) and not output.is_dir():
            jobs = [Job(source, output, source.name, "video")]
        elif output.suffix.lower() in SUPPORTED_SUFFIXES and not output.is_dir():
            target_fmt = format_for_path(output) if fmt == "keep" else _output_format(source, fmt)
            jobs = [Job(source, output, source.name, target_fmt)]
        else:
            out_name = _output_name(source, fmt, suffix, name, fields)
            jobs = [Job(source, output / out_name, source.name, _output_format(source, fmt))]
            _check_inside(jobs, output)
    else:
        out_resolved = _resolved(output)
        source_resolved = _resolved(source)
        inside = out_resolved != source_resolved and out_resolved.is_relative_to(source_resolved)
        jobs = []
        for path, error in _walk(source, recursive, out_resolved if inside else None):
            relative = path.relative_to(source).as_posix()
            if error is not None:
                if path == source:
                    raise UsageError(f"cannot read folder {source}: {error.strerror or error}")
                reason = f"cannot read this folder ({error.strerror or error}): not upscaled"
                jobs.append(Job(path, output / relative, f"{relative}/", "", conflict=reason))
                continue
            if not _matches(path, relative, pattern, allowed):
                if unsupported is not None:
                    unsupported.append((relative, _left_out_kind(path, pattern, extensions)))
                continue
            out_name = _output_name(path, fmt, suffix, name, fields)
            target = output / path.relative_to(source).parent / out_name
            jobs.append(Job(path, target, relative, _output_format(path, fmt), input_problem(path)))
        _check_inside(jobs, output)

    inputs = {_resolved(job.source) for job in jobs if not job.conflict}
    clobbered = [job for job in jobs if not job.conflict and _resolved(job.target) in inputs]
    if clobbered:
        raise UsageError(
            f"the output would overwrite input files (e.g. {clobbered[0].target}); "
            "choose another OUTPUT or pass --suffix"
        )
    return _mark_collisions(jobs)


def _mark_collisions(jobs: list[Job]) -> list[Job]:
    seen: dict[Path, str] = {}
    planned: list[Job] = []
    for job in jobs:
        if job.conflict:  # reported as failed, writes nothing
            planned.append(job)
            continue
        key = _resolved(job.target)
        if key in seen:
            reason = f"same output file as {seen[key]}: {job.target.name}"
            planned.append(Job(job.source, job.target, job.name, job.format, conflict=reason))
        else:
            seen[key] = job.name
            planned.append(job)
    return planned


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard K/N`` -> (K, N): this machine's share, K counted from 0 (0 <= K < N), as
    Slurm's ``SLURM_ARRAY_TASK_ID`` with ``--array=0-(N-1)`` and Kubernetes'
    ``JOB_COMPLETION_INDEX`` give it. Raises :class:`UsageError` in one line."""
    usage = (
        f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. 0/4 ... 3/4 "
        "(K counts from 0, like SLURM_ARRAY_TASK_ID with --array=0-3 or JOB_COMPLETION_INDEX)"
    )
    index, sep, count = text.strip().partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise UsageError(usage)
    k, n = int(index), int(count)
    if n < 1 or k >= n:
        raise UsageError(usage)
    return k, n


def in_shard(name: str, index: int, count: int) -> bool:
    """Whether the file of relative path ``name`` belongs to shard ``index`` of ``count``.

    The share is a hash of the path relative to INPUT (SHA-256, not Python's salted ``hash``):
    it depends on nothing but the name, so every machine agrees whatever order its file system
    lists the folder in, whichever outputs already exist (``--skip-existing``), and even when
    files were added between the machines' listings: a file never moves to another shard, so none
    is done twice or left out. The shards' sizes vary by chance (binomially, a few per cent for
    thousands of files), the price of that stability.
    """
    if count == 1:
        return True
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count == index


def shard_jobs(jobs: list[Job], index: int, count: int) -> list[Job]:
    """The jobs of shard ``index`` of ``count`` (see :func:`in_shard`), in their order."""
    return [job for job in jobs if in_shard(job.name, index, count)]
