"""Dataset registry, data-root resolution, and verified downloads from a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srtool import datasets
from srtool.cli import app
from srtool.errors import DataError


def _set5_zip(shared: Path, dest: Path, *, damage: str | None = None) -> str:
    """Archive the real Set5 files under ``benchmark/Set5/HR/`` (as the EDSR archive lays them
    out) as zip, or tar.gz when ``dest`` says so; returns the archive's sha256. ``damage``
    names a file whose bytes are altered."""
    files = {"benchmark/README.txt": b"reference copy"}
    for path in sorted((shared / "Set5").glob("*.png")):
        data = path.read_bytes()
        if path.name == damage:
            data = data[:-20] + bytes(20)
        files[f"benchmark/Set5/HR/{path.name}"] = data
    if dest.name.endswith(".tar.gz"):
        with tarfile.open(dest, "w:gz") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    else:
        with zipfile.ZipFile(dest, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def test_registry_names_aliases_and_unknown() -> None:
    assert datasets.get("b100").name == "BSD100"
    assert datasets.get("div2k_valid").name == "DIV2K-valid"
    assert datasets.get("DIV2K").folder == "DIV2K/DIV2K_train_HR"
    with pytest.raises(datasets.DatasetMissingError, match="known datasets: Set5, Set14"):
        datasets.get("Set6")
    for name in ("Set5", "Set14", "BSD100", "T91", "BSD200"):
        table = datasets.md5_list(name)
        assert table is not None and len(table) == datasets.get(name).count


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRTOOL_DATA", str(tmp_path / "env"))
    assert datasets.resolve_root(tmp_path / "flag") == tmp_path / "flag"
    assert datasets.resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("SRTOOL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = datasets.default_data_root()
    assert datasets.resolve_root(None) == expected
    assert expected.parts[-2:] == ("srtool", "data")


def test_resolve_shared_copies_and_verify(shared_data: Path) -> None:
    assert datasets.resolve("Set14", shared_data) == shared_data / "Set14"
    result = datasets.verify("Set5", shared_data)
    assert result.ok and result.files == 5


def test_missing_and_incomplete_messages(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(datasets.DatasetMissingError) as info:
        datasets.resolve("Urban100", tmp_path)
    message = str(info.value)
    assert "srtool data fetch Urban100" in message and str(tmp_path / "Urban100") in message
    assert info.value.exit_code == 2
    with pytest.raises(datasets.DatasetMissingError, match="manga109.org"):
        datasets.resolve("Manga109", tmp_path)
    # An EDSR-style layout is found; an incomplete copy is reported as such.
    hr = tmp_path / "benchmark" / "Set5" / "HR"
    hr.mkdir(parents=True)
    for path in sorted((shared_data / "Set5").glob("*.png"))[:3]:
        shutil.copy(path, hr)
    with pytest.raises(datasets.DatasetMissingError, match="incomplete: 3 of 5"):
        datasets.resolve("Set5", tmp_path)


@pytest.mark.parametrize("name", ["Set5", "Set14", "BSD100"])
def test_missing_benchmark_names_the_size_of_its_images(
    name: str, tmp_path: Path, shared_data: Path
) -> None:
    ds = datasets.get(name)
    on_disk = sum(p.stat().st_size for p in (shared_data / ds.folder).iterdir()) / 1e6
    assert ds.images_mb == pytest.approx(on_disk, rel=0.15)  # measured, not guessed
    with pytest.raises(datasets.DatasetMissingError) as info:
        datasets.resolve(name, tmp_path)
    assert f"its images take about {ds.images_mb:g} MB" in str(info.value)
    assert "archive of several benchmarks" in str(info.value)


@pytest.mark.parametrize("archive", ["benchmark.zip", "benchmark.tar.gz"])
def test_fetch_verifies_and_installs(
    tmp_path: Path, shared_data: Path, server: tuple[str, Path], archive: str
) -> None:
    base, www = server
    digest = _set5_zip(shared_data, www / archive)
    root = tmp_path / "root"
    seen: list[int] = []
    folder = datasets.fetch(
        "Set5",
        root,
        url=f"{base}/{archive}",
        sha256=digest,
        progress=lambda done, total: seen.append(done),
    )
    assert folder == root / "Set5"
    assert sorted(p.name for p in folder.iterdir()) == sorted(datasets.md5_list("Set5"))
    assert datasets.verify("Set5", root).ok
    assert seen and seen[-1] == (www / archive).stat().st_size
    assert not list(root.glob(".staging-*")) and not list(root.glob(".downloads/.part-*"))
    # Present: nothing is downloaded again (the server no longer has the file).
    (www / archive).unlink()
    assert datasets.fetch("Set5", root, url=f"{base}/{archive}") == folder


def test_fetch_rejects_corrupt_download(
    tmp_path: Path, shared_data: Path, server: tuple[str, Path]
) -> None:
    base, www = server
    digest = _set5_zip(shared_data, www / "good.zip")
    data = bytearray((www / "good.zip").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (www / "bad.zip").write_bytes(bytes(data))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="checksum mismatch"):
        datasets.fetch("Set5", root, url=f"{base}/bad.zip", sha256=digest)
    assert not (root / "Set5").exists()
    assert not list(root.glob(".downloads/*"))
    # Without a pin, the zip's own CRC still catches the damaged member.
    with pytest.raises(DataError, match="damaged|checksum"):
        datasets.fetch("Set5", root, url=f"{base}/bad.zip")
    assert not (root / "Set5").exists()
    assert not list(root.glob(".downloads/*"))  # a bad archive is never kept for reuse


def test_fetch_rejects_altered_file_by_reference_md5(
    tmp_path: Path, shared_data: Path, server: tuple[str, Path]
) -> None:
    base, www = server
    _set5_zip(shared_data, www / "altered.zip", damage="bird.png")
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"reference checksums: 5 files; 1 differ \(bird.png\)"):
        datasets.fetch("Set5", root, url=f"{base}/altered.zip")
    assert not (root / "Set5").exists() and not list(root.glob(".staging-*"))


def test_fetch_refuses_path_traversal(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, www = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        payload = b"not an image"
        info = tarfile.TarInfo("../../escaped.png")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    (www / "evil.tar.gz").write_bytes(buf.getvalue())
    root = tmp_path / "deep" / "root"
    with pytest.raises(DataError, match="unsafe path"):
        datasets.fetch("Set5", root, url=f"{base}/evil.tar.gz")
    assert not (tmp_path / "escaped.png").exists()
    assert not (tmp_path / "deep" / "escaped.png").exists()


def test_fetch_unreachable_and_wrong_count(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, www = server
    with pytest.raises(DataError, match="could not download"):
        datasets.fetch("Set5", tmp_path, url=f"{base}/nothing-here.zip", timeout=5)
    with zipfile.ZipFile(www / "two.zip", "w") as zf:
        zf.writestr("benchmark/Set5/HR/a.png", b"x")
        zf.writestr("benchmark/Set5/HR/b.png", b"y")
    with pytest.raises(DataError, match="holds 2 Set5 images, expected 5"):
        datasets.fetch("Set5", tmp_path, url=f"{base}/two.zip")
    with pytest.raises(datasets.DatasetMissingError, match="manga109.org"):
        datasets.fetch("Manga109", tmp_path)


def _text(result) -> str:  # noqa: ANN001 - Rich wraps lines at the console width
    return " ".join(result.output.split())


def test_cli_fetch_list_verify(tmp_path: Path, shared_data: Path, server: tuple[str, Path]) -> None:
    base, www = server
    digest = _set5_zip(shared_data, www / "set5.zip")
    root = tmp_path / "root"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "data",
            "fetch",
            "Set5",
            "--data-root",
            str(root),
            "--url",
            f"{base}/set5.zip",
            "--sha256",
            digest,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "all match the reference checksums" in _text(result)
    result = runner.invoke(app, ["data", "verify", "Set5", "--data-root", str(root)])
    assert result.exit_code == 0 and "5 files" in _text(result)
    (root / "Set5" / "baby.png").write_bytes(b"changed")
    result = runner.invoke(app, ["data", "verify", "Set5", "--data-root", str(root)])
    assert result.exit_code == 1 and "1 differ (baby.png)" in _text(result)
    result = runner.invoke(app, ["data", "list", "--data-root", str(root)])
    assert result.exit_code == 0 and "Urban100" in result.output and "missing" in result.output
    result = runner.invoke(app, ["data", "fetch", "Nope", "--data-root", str(root)])
    assert result.exit_code == 2 and "unknown dataset" in _text(result)


def test_evaluate_download_fetches_missing_benchmark(
    tmp_path: Path, shared_data: Path, server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``srtool evaluate --download`` fetches a missing benchmark from the registry's source
    (here the registry entry points at the local server) and scores it."""
    import dataclasses

    base, www = server
    digest = _set5_zip(shared_data, www / "benchmark.zip")
    entry = datasets.DATASETS["Set5"]
    source = datasets.Source(f"{base}/benchmark.zip", "benchmark/Set5/HR", sha256=digest)
    monkeypatch.setitem(datasets.DATASETS, "Set5", dataclasses.replace(entry, source=source))
    root = tmp_path / "root"
    runner = CliRunner()
    args = ["evaluate", "--bench", "Set5", "--data-root", str(root), "--no-ms-ssim"]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "--download" in _text(missing)
    result = runner.invoke(app, [*args, "--download", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert datasets.verify("Set5", root).ok
    assert "28.43" in _text(result)


def _zip(dest: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(dest, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def _set5_files(shared: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((shared / "Set5").glob("*.png"))}


@pytest.mark.parametrize("case", ["fake", "renamed", "extra"])
def test_fetch_refuses_a_copy_that_is_not_the_reference_list(
    tmp_path: Path, shared_data: Path, server: tuple[str, Path], case: str
) -> None:
    """The MD5 list applies even when no file name matches it: fake files under the right
    names' count, real photos under other names, or the real files plus one more image are
    all refused, and the archive is not kept for reuse."""
    base, www = server
    real = _set5_files(shared_data)
    if case == "fake":
        files = {f"x{i}.png": b"not an image" for i in range(5)}
    elif case == "renamed":
        files = {f"photo{i}.png": data for i, data in enumerate(real.values())}
    else:
        files = {**real, "raw.png": real["baby.png"]}
    _zip(www / "c3.zip", {f"benchmark/Set5/HR/{k}": v for k, v in files.items()})
    root = tmp_path / "root"
    expected = {"fake": "5 missing", "renamed": "5 not in the reference list", "extra": "raw.png"}
    with pytest.raises(DataError, match=f"fails its reference checksums: .*{expected[case]}"):
        datasets.fetch("Set5", root, url=f"{base}/c3.zip")
    assert not (root / "Set5").exists()
    assert not (root / ".downloads").exists() and not list(root.glob(".staging-*"))


def test_verify_fails_on_a_substituted_copy(tmp_path: Path, shared_data: Path) -> None:
    """``data verify`` exits 1 for renamed files and for an extra image, as for a changed one;
    a README beside the images is not an image of the dataset and does not count."""
    folder = tmp_path / "Set5"
    folder.mkdir()
    for name, data in _set5_files(shared_data).items():
        (folder / name).write_bytes(data)
    (folder / "README.txt").write_text("notes")
    runner = CliRunner()
    args = ["data", "verify", "Set5", "--data-root", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "all match the reference checksums" in _text(result)
    (folder / "raw.png").write_bytes((folder / "baby.png").read_bytes())
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "1 not in the reference list (raw.png)" in _text(result)
    (folder / "raw.png").unlink()
    (folder / "bird.png").rename(folder / "x0.png")
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "1 missing (bird.png)" in _text(result) and "(x0.png)" in _text(result)
    assert not datasets.verify("Set5", tmp_path).ok


def test_installed_dataset_is_readable_by_others(
    tmp_path: Path, shared_data: Path, server: tuple[str, Path]
) -> None:
    """The installed folder has the umask's permissions, not a temporary folder's 0700."""
    import os
    import stat

    base, www = server
    digest = _set5_zip(shared_data, www / "set5.zip")
    root = tmp_path / "root"
    old = os.umask(0o022)
    try:
        folder = datasets.fetch("Set5", root, url=f"{base}/set5.zip", sha256=digest)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in folder.iterdir())


def test_non_reference_source_installs_with_a_warning(
    tmp_path: Path,
    shared_data: Path,
    server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A registry source declared not to be the reference copy (BSDS300's JPEG originals for
    BSD200) installs on its file count, says so, and ``verify`` does not call it the reference."""
    import dataclasses

    base, www = server
    files = {f"im{i}.png": data for i, data in enumerate(_set5_files(shared_data).values())}
    _zip(www / "other.zip", {f"benchmark/Set5/HR/{k}": v for k, v in files.items()})
    entry = datasets.DATASETS["Set5"]
    source = datasets.Source(f"{base}/other.zip", "benchmark/Set5/HR", reference=False)
    monkeypatch.setitem(datasets.DATASETS, "Set5", dataclasses.replace(entry, source=source))
    root = tmp_path / "root"
    with caplog.at_level("WARNING", logger="srtool"):
        folder = datasets.fetch("Set5", root)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert "not the reference copy" in caplog.text
    assert not datasets.verify("Set5", root).ok
    # ... but a file named as in the list must still have its MD5
    files["bird.png"] = b"changed"
    _zip(www / "other.zip", {f"benchmark/Set5/HR/{k}": v for k, v in files.items()})
    with pytest.raises(DataError, match=r"1 differ \(bird.png\)"):
        datasets.fetch("Set5", root, force=True)
    assert datasets.DATASETS["BSD200"].source.reference is False


def test_fetch_refuses_a_file_and_a_folder_of_one_name(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    """One line, exit 1, the broken archive removed and no empty .downloads/ left behind."""
    base, www = server
    _zip(
        www / "clash.zip",
        {"benchmark/Set5/HR/a.png": b"x", "benchmark/Set5/HR/a.png/b.png": b"y"},
    )
    root = tmp_path / "root"
    with pytest.raises(DataError, match="both a file and a folder named 'a.png'"):
        datasets.fetch("Set5", root, url=f"{base}/clash.zip")
    assert not (root / ".downloads").exists() and not list(root.glob(".staging-*"))
    _zip(
        www / "clash2.zip",
        {"benchmark/Set5/HR/a.png/b.png": b"y", "benchmark/Set5/HR/a.png": b"x"},
    )
    result = CliRunner().invoke(
        app, ["data", "fetch", "Set5", "--data-root", str(root), "--url", f"{base}/clash2.zip"]
    )
    assert result.exit_code == 1, result.output
    assert "both a file and a folder named 'a.png'" in _text(result)
    assert "Traceback" not in result.output and "FileExistsError" not in result.output
    assert _text(result).count("error:") == 1
    assert not (root / ".downloads").exists()
