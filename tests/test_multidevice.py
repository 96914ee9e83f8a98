"""Several devices in one run (``--device cuda:0,1``) and one batch split over machines
(``--shard K/N``). Without a GPU, the inference workers are CPU upscalers: the pipeline does not
care which device a session runs on."""

from __future__ import annotations

import _thread
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import srtool.infer
from srtool.cli import app
from srtool.errors import DeviceError, UsageError
from srtool.infer import load_upscaler, onnx_session, plan_upscale
from srtool.infer import upscaler as upscaler_module
from srtool.infer.jobs import Job, collect_jobs, in_shard, parse_shard, shard_jobs
from srtool.infer.onnx_session import expand_devices
from srtool.infer.pipeline import (
    CPU_WORKER_MIN_FILES,
    BatchInterrupted,
    BatchOptions,
    cpu_worker_count,
    run_batch,
)
from srtool.infer.upscaler import auto_tile_size

runner = CliRunner()


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        pixels = rng.integers(0, 256, (20 + i, 28, 3), dtype=np.uint8)
        folder = root / "sub" if i % 3 == 0 else root
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    return root


def _cpu(model: Path):  # noqa: ANN202
    return load_upscaler(str(model), device="cpu", threads=1, tile=16, overlap=4)


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(folder).as_posix(): np.asarray(Image.open(p))
        for p in sorted(folder.rglob("*.png"))
    }


class _Slow:
    """An upscaler that waits a little per image, so that every worker gets files."""

    def __init__(self, upscaler, seconds: float = 0.05) -> None:  # noqa: ANN001
        self._upscaler, self._seconds = upscaler, seconds

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._upscaler, name)

    def render(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        time.sleep(self._seconds)
        return self._upscaler.render(*args, **kwargs)


class _Broken(_Slow):
    """An upscaler whose device fails: every image raises an unexpected error."""

    def render(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise RuntimeError("device lost")


# ------------------------------------------------------------------------ several devices


def test_two_workers_write_the_same_files_as_one(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, watchdog
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_batch(collect_jobs(photos, one), _cpu(tiny_model_x2))
    pair = [_Slow(_cpu(tiny_model_x2)), _Slow(_cpu(tiny_model_x2))]
    double = run_batch(collect_jobs(photos, two), pair)
    assert single.done == double.done == 8 and not double.failed
    expected, got = _pixels(one), _pixels(two)
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name])


def test_a_failing_device_loses_no_other_file(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, caplog: pytest.LogCaptureFixture, watchdog
) -> None:
    """The broken worker fails the one file it took and stops; the healthy one does the rest."""
    out = tmp_path / "out"
    upscalers = [_Slow(_cpu(tiny_model_x2)), _Broken(_cpu(tiny_model_x2))]
    summary = run_batch(collect_jobs(photos, out), upscalers)
    assert len(summary.results) == 8
    assert len(summary.failed) == 1 and summary.done == 7
    assert "device lost" in summary.failed[0].reason
    assert "inference on cpu stopped" in caplog.text
    assert len(_pixels(out)) == 7
    assert [p for p in out.rglob(".*")] == []


def test_every_device_failing_ends_the_batch(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, watchdog
) -> None:
    upscalers = [_Broken(_cpu(tiny_model_x2)), _Broken(_cpu(tiny_model_x2))]
    summary = run_batch(collect_jobs(photos, tmp_path / "out"), upscalers)
    assert len(summary.results) == 8 and summary.done == 0
    reasons = [r.reason for r in summary.failed]
    stopped = [r for r in reasons if r.startswith("not processed: inference stopped")]
    assert len(stopped) == 6  # the two files the workers took failed with the device's error
    assert all("device lost" in r for r in reasons)


def test_a_usage_error_in_a_worker_stops_the_batch(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, watchdog
) -> None:
    class Refusing(_Slow):
        def render(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            raise UsageError("this model cannot run these options")

    upscalers = [_Slow(_cpu(tiny_model_x2)), Refusing(_cpu(tiny_model_x2))]
    with pytest.raises(UsageError, match="cannot run these options"):
        run_batch(collect_jobs(photos, tmp_path / "out"), upscalers)


def test_ctrl_c_stops_every_worker(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, watchdog
) -> None:
    out = tmp_path / "out"
    jobs = collect_jobs(photos, out)
    upscalers = [_Slow(_cpu(tiny_model_x2), 0.3), _Slow(_cpu(tiny_model_x2), 0.3)]

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 20
        while not any(out.rglob("*.png")) and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(BatchInterrupted) as stopped:
        run_batch(jobs, upscalers, BatchOptions())
    assert time.monotonic() - started < 15
    summary = stopped.value.summary
    assert summary.interrupted and 1 <= summary.done < 8
    assert summary.done + summary.not_processed == 8
    assert len(_pixels(out)) == summary.done
    assert [p for p in out.rglob(".*")] == []  # nothing half-written
    alive = [t.name for t in threading.enumerate() if t.name.startswith("srtool-") and t.is_alive()]
    assert alive == []


def test_run_batch_needs_an_upscaler(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        run_batch(collect_jobs(photos, tmp_path / "out"), [])


def test_device_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_session, "cuda_device_count", lambda: 4)
    assert expand_devices("cuda:0,1") == ["cuda:0", "cuda:1"]
    assert expand_devices(" CUDA:3, 1 ") == ["cuda:3", "cuda:1"]
    assert expand_devices("cuda:all") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    for single in ("auto", "cpu", "cuda", "cuda:2"):
        assert expand_devices(single) == [single]
    with pytest.raises(DeviceError, match="CUDA device 4, 7 requested but 4 CUDA device"):
        expand_devices("cuda:0,4,7")
    with pytest.raises(DeviceError, match="listed twice"):
        expand_devices("cuda:1,1")
    for bad in ("cuda:0,x", "cuda:,", "gpu:0,1", "cuda:0;1"):
        with pytest.raises(DeviceError, match="unknown device"):
            expand_devices(bad)
    monkeypatch.setattr(onnx_session, "cuda_device_count", lambda: 0)
    with pytest.raises(DeviceError, match="no CUDA device found"):
        expand_devices("cuda:all")
    with pytest.raises(DeviceError, match="no CUDA device found"):
        expand_devices("cuda:0,1")


def test_plan_opens_one_upscaler_per_device(
    tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = plan_upscale(str(tiny_model_x2), device="cpu", threads=1)
    assert single.upscalers == (single.upscaler,)
    monkeypatch.setattr(onnx_session, "expand_devices", lambda device: ["cpu", "cpu"])
    plan = plan_upscale(str(tiny_model_x2), device="cuda:0,1", threads=1)
    assert len(plan.upscalers) == 2 and plan.upscaler is plan.upscalers[0]
    assert plan.upscalers[0] is not plan.upscalers[1]


def test_cli_device_list_errors_in_one_line(
    photos: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    count = onnx_session.cuda_device_count()
    result = runner.invoke(
        app,
        ["upscale", str(photos), str(tmp_path / "o"), "-m", str(tiny_model_x2),
         "--device", f"cuda:0,{count + 1}"],
    )  # fmt: skip
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "requested but" in errors[0] and str(count + 1) in errors[0]
    assert not (tmp_path / "o").exists()


def test_cli_runs_a_device_list(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_session, "expand_devices", lambda device: ["cpu", "cpu"])
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["upscale", str(photos), str(out), "-m", str(tiny_model_x2), "--device", "cuda:all"]
    )
    assert result.exit_code == 0, result.output
    assert "8 done, 0 skipped, 0 failed" in result.output
    assert len(_pixels(out)) == 8


# ------------------------------------------------------------------------ shards


def test_parse_shard() -> None:
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard(" 3/4 ") == (3, 4)
    assert parse_shard("0/1") == (0, 1)
    for bad in ("4/4", "5/4", "1/0", "0/0", "-1/4", "1", "a/4", "1/4/2", "", "1/ "):
        with pytest.raises(UsageError, match="expected K/N with 0 <= K < N"):
            parse_shard(bad)


def _jobs(names: list[str]) -> list[Job]:
    return [Job(Path("in", n), Path("out", n), n, "png") for n in names]


def test_shards_are_disjoint_and_cover_everything() -> None:
    names = [f"d{i % 7}/img_{i:05d}.png" for i in range(1000)] + ["é/ü.png", "a b.jpg"]
    jobs = _jobs(names)
    for count in (1, 2, 3, 8):
        shards = [shard_jobs(jobs, k, count) for k in range(count)]
        taken = [job.name for shard in shards for job in shard]
        assert sorted(taken) == sorted(names)  # every file once: none twice, none left out
        if count > 1:
            assert all(len(shard) > 1000 / count * 0.7 for shard in shards)  # roughly even


def test_shards_do_not_depend_on_order_outputs_or_other_files() -> None:
    names = [f"img_{i:04d}.png" for i in range(300)]
    jobs = _jobs(names)
    before = {k: {j.name for j in shard_jobs(jobs, k, 4)} for k in range(4)}
    shuffled = jobs[:]
    random.Random(1).shuffle(shuffled)
    more = shuffled + _jobs([f"new_{i}.png" for i in range(50)])  # files added since
    for k in range(4):
        after = {j.name for j in shard_jobs(more, k, 4)}
        assert after & set(names) == before[k]  # no old file moved to another shard
        assert [j.name for j in shard_jobs(shuffled, k, 4)] == [
            j.name for j in shuffled if in_shard(j.name, k, 4)
        ]  # the order given is kept


def test_cli_shards_with_skip_existing_cover_the_folder_once(
    photos: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    """N runs of --shard K/N into one output: every file written exactly once; a rerun of a
    shard (a retried array task) with --skip-existing writes nothing new."""
    out = tmp_path / "out"
    done = 0
    for k in range(3):
        result = runner.invoke(
            app,
            ["upscale", str(photos), str(out), "-m", str(tiny_model_x2), "--shard", f"{k}/3",
             "--skip-existing"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"shard {k}/3:" in result.output
        done += sum(1 for line in result.output.splitlines() if " done " in line)
    assert done == 8
    assert len(_pixels(out)) == 8
    again = runner.invoke(
        app,
        ["upscale", str(photos), str(out), "-m", str(tiny_model_x2), "--shard", "1/3",
         "--skip-existing"],
    )  # fmt: skip
    assert again.exit_code == 0 and " done " not in again.output


def test_cli_bad_shard_is_a_usage_error(photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["upscale", str(photos), str(tmp_path / "o"), "--shard", "4/4"])
    assert result.exit_code == 2
    assert "expected K/N with 0 <= K < N" in result.output


# ------------------------------------------------------------------------ CPU workers


def _job(name: str, fmt: str = "png", conflict: str | None = None) -> Job:
    return Job(Path(name), Path("out") / name, name, fmt, conflict)


def test_cpu_worker_count_splits_only_batches_of_many_images() -> None:
    images = [_job(f"p{i}.png") for i in range(CPU_WORKER_MIN_FILES)]
    assert cpu_worker_count(images, cores=2) == 2
    assert cpu_worker_count(images, cores=16) == 2
    assert cpu_worker_count(images, cores=1) == 1
    assert cpu_worker_count(images[:-1], cores=2) == 1
    clash = _job("clash.png", conflict="two inputs write it")
    assert cpu_worker_count([*images[:-1], clash], cores=2) == 1  # not a file that runs
    assert cpu_worker_count([*images, _job("clip.mp4", "video")], cores=2) == 1


def test_plan_splits_threads_and_memory_between_cpu_workers(
    tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_upscale(str(tiny_model_x2), device="cpu", threads=4, cpu_workers=2)
    assert len(plan.upscalers) == 2 and plan.upscaler is plan.upscalers[0]
    assert plan.upscalers[0].model.session is not plan.upscalers[1].model.session
    for worker in plan.upscalers:
        assert worker.model.session.get_session_options().intra_op_num_threads == 2
    free = 256 * 1024**2
    monkeypatch.setattr(upscaler_module, "free_memory_bytes", lambda *args: free)
    info = plan.upscaler.info
    assert plan.upscaler.tile_for(4000, 4000) == auto_tile_size(info, "cpu", free // 2, 1)
    assert auto_tile_size(info, "cpu", free // 2, 1) < auto_tile_size(info, "cpu", free, 1)
    odd = plan_upscale(str(tiny_model_x2), device="cpu", threads=3, cpu_workers=2).upscalers
    threads = [w.model.session.get_session_options().intra_op_num_threads for w in odd]
    assert threads == [2, 1]  # every thread used
    # never more workers than threads
    assert (
        len(plan_upscale(str(tiny_model_x2), device="cpu", threads=1, cpu_workers=2).upscalers) == 1
    )
    with pytest.raises(UsageError, match="--workers"):
        plan_upscale(str(tiny_model_x2), device="cpu", cpu_workers=0)


def test_cli_cpu_workers_write_the_same_files_as_one(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    plan = srtool.infer.plan_upscale

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        asked.append(kwargs["cpu_workers"])
        return plan(*args, **kwargs)

    monkeypatch.setattr(srtool.infer, "plan_upscale", spy)
    outputs = {}
    for workers in ("1", "2", None):
        out = tmp_path / f"out{workers}"
        command = ["upscale", str(photos), str(out), "-m", str(tiny_model_x2), "--threads", "2"]
        result = runner.invoke(app, command + (["--workers", workers] if workers else []))
        assert result.exit_code == 0, result.output
        assert "8 done, 0 skipped, 0 failed" in result.output
        outputs[workers] = _pixels(out)
    expected_default = cpu_worker_count(collect_jobs(photos, tmp_path / "x"))
    assert asked == [1, 2, expected_default]
    assert outputs["1"].keys() == outputs["2"].keys() == outputs[None].keys()
    for name, pixels in outputs["1"].items():
        assert np.array_equal(pixels, outputs["2"][name])
        assert np.array_equal(pixels, outputs[None][name])


def test_cli_workers_are_for_the_cpu(photos: Path, tmp_path: Path, tiny_model_x2: Path) -> None:
    result = runner.invoke(
        app,
        ["upscale", str(photos), str(tmp_path / "o"), "-m", str(tiny_model_x2),
         "--device", "cuda", "--workers", "2"],
    )  # fmt: skip
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "--workers is for CPU inference" in errors[0]
    assert not (tmp_path / "o").exists()
