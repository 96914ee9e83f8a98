"""Which files to upscale and where each result goes.

A folder is walked recursively (optionally not), hidden and system files are ignored, and the
output tree mirrors the input tree. An output folder inside the input folder is never walked, and
no output path may be an input file.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from srtool.errors import UsageError
from srtool.imageio import SUPPORTED_SUFFIXES, format_for_path, suffix_for_format

__all__ = ["Job", "collect_jobs", "IGNORED_NAMES", "OUTPUT_FORMATS"]

IGNORED_NAMES = frozenset(
    {"thumbs.db", "ehthumbs.db", "desktop.ini", ".ds_store", "__macosx", "@eadir", "$recycle.bin"}
)
OUTPUT_FORMATS = ("keep", "png", "jpg", "webp", "tiff")


@dataclass(frozen=True)
class Job:
    """One input file and the output file it becomes."""

    source: Path
    target: Path
    name: str  # the source path relative to the input, for messages
    format: str  # output format: png, jpeg, webp, tiff or bmp
    conflict: str | None = None  # why this job cannot run (set when planning)


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _output_format(source: Path, fmt: str) -> str:
    if fmt == "keep":
        return format_for_path(source)
    return format_for_path(Path("x." + fmt))


def _output_name(source: Path, fmt: str, suffix: str) -> str:
    ext = source.suffix if fmt == "keep" else suffix_for_format(_output_format(source, fmt))
    return f"{source.stem}{suffix}{ext}"


def _walk(root: Path, recursive: bool, skip_dir: Path | None) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if recursive
            and not _ignored(d)
            and (skip_dir is None or (here / d).resolve() != skip_dir)
        )
        found.extend(here / f for f in sorted(files) if not _ignored(f))
    return found


def _matches(path: Path, relative: str, pattern: str | None, extensions: set[str]) -> bool:
    if path.suffix.lower() not in extensions:
        return False
    if pattern is None:
        return True
    return fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(path.name, pattern)


def collect_jobs(
    source: Path,
    output: Path,
    *,
    recursive: bool = True,
    pattern: str | None = None,
    extensions: set[str] | None = None,
    fmt: str = "keep",
    suffix: str = "",
) -> list[Job]:
    """Plan the batch: one ``Job`` per input image.

    ``source`` is a file or a folder. For a file, ``output`` is the output file when it has an
    image suffix and is not an existing folder, else the folder to write into. Jobs whose output
    would collide with another job's get a ``conflict`` reason and are reported, not run.
    Raises ``UsageError`` for a missing input or when outputs would overwrite inputs.
    """
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"unknown --format '{fmt}' (choose from {', '.join(OUTPUT_FORMATS)})")
    if not source.exists():
        raise UsageError(f"input not found: {source}")
    allowed = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions or ()}
    allowed = allowed or set(SUPPORTED_SUFFIXES)
    unknown = allowed - set(SUPPORTED_SUFFIXES)
    if unknown:
        raise UsageError(
            f"unsupported extension(s) {', '.join(sorted(unknown))}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )

    if source.is_file():
        if source.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise UsageError(f"{source.name}: not a supported image type")
        if output.suffix.lower() in SUPPORTED_SUFFIXES and not output.is_dir():
            target_fmt = format_for_path(output) if fmt == "keep" else _output_format(source, fmt)
            jobs = [Job(source, output, source.name, target_fmt)]
        else:
            name = _output_name(source, fmt, suffix)
            jobs = [Job(source, output / name, source.name, _output_format(source, fmt))]
    else:
        out_resolved = output.resolve()
        inside = out_resolved != source.resolve() and out_resolved.is_relative_to(source.resolve())
        files = _walk(source, recursive, out_resolved if inside else None)
        jobs = []
        for path in files:
            relative = path.relative_to(source).as_posix()
            if not _matches(path, relative, pattern, allowed):
                continue
            target = output / path.relative_to(source).parent / _output_name(path, fmt, suffix)
            jobs.append(Job(path, target, relative, _output_format(path, fmt)))

    inputs = {job.source.resolve() for job in jobs}
    clobbered = [job for job in jobs if job.target.resolve() in inputs]
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
        key = job.target.resolve()
        if key in seen:
            reason = f"same output file as {seen[key]}: {job.target.name}"
            planned.append(Job(job.source, job.target, job.name, job.format, conflict=reason))
        else:
            seen[key] = job.name
            planned.append(job)
    return planned
