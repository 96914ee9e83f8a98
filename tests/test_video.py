"""`srtool upscale` on video files: short clips made here with PyAV, a tiny real ONNX model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from srtool.cli import app

av = pytest.importorskip("av")

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def run(*args: str):
    return runner.invoke(app, ["upscale", *args])


def make_clip(
    path: Path,
    *,
    frames: int = 12,
    width: int = 32,
    height: int = 24,
    fps: int = 24,
    audio: bool = True,
) -> Path:
    """An H.264 clip (smooth moving gradients) with, optionally, a mono AAC tone as long."""
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    sound = None
    if audio:
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
    ys, xs = np.mgrid[0:height, 0:width]
    for i in range(frames):
        image = np.stack(
            [(xs * 4 + i * 9) % 256, (ys * 6 + i * 5) % 256, np.full_like(xs, i * 20 % 256)], axis=2
        ).astype(np.uint8)
        container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    container.mux(video.encode(None))
    if sound is not None:
        samples = 48000 * frames // fps
        for start in range(0, samples, 1024):
            count = min(1024, samples - start)
            tone = np.sin(np.arange(start, start + count) / 8.0).astype(np.float32) * 0.3
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    container.close()
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio
        info = {
            "size": (video.codec_context.width, video.codec_context.height),
            "rate": video.average_rate,
            "codec": video.codec_context.name,
            "audio": [(a.codec_context.name, float(a.duration * a.time_base)) for a in audio],
        }
        times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    info["frames"] = len(times)
    info["times"] = times
    return info


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".srtool-tmp-" in p.name]


def test_clip_is_upscaled_with_its_audio(tmp_path: Path, tiny_model_x2: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out.mp4"
    result = run(str(clip), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    assert "videos are encoded as H.264" in result.output
    assert "12 frames" in result.output and "1 done, 0 skipped, 0 failed" in result.output
    before, after = probe(clip), probe(out)
    assert after["size"] == (64, 48) and after["frames"] == 12 == before["frames"]
    assert after["codec"] == "h264" and after["rate"] == Fraction(24)
    assert after["times"] == pytest.approx(before["times"], abs=1 / 48)  # same timestamps
    assert len(after["audio"]) == 1 and after["audio"][0][0] == "aac"
    assert after["audio"][0][1] == pytest.approx(before["audio"][0][1], abs=1 / 24)
    assert not temporaries(tmp_path)


def test_folder_with_videos_and_options(tmp_path: Path, tiny_model_x2: Path) -> None:
    """Videos in a folder keep their suffix (``--format`` is for images); ``--codec``/``--crf``;
    a video the container cannot hold the audio of drops it with a notice; odd sizes are
    cropped to even ones; a corrupt video is one failed line and the batch goes on."""
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    make_clip(src / "a.mkv", audio=False, frames=6)
    make_clip(src / "nested" / "b.mov", frames=6, width=34, height=26)
    (src / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    out = tmp_path / "out"
    result = run(
        str(src), str(out), "--model", str(tiny_model_x2), "--format", "png", "--crf", "30",
        "--outscale", "1.5",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "failed bad.mp4" in result.output and "cannot read this video" in result.output
    assert "2 done, 0 skipped, 1 failed" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.mkv",
        "nested",
        "nested/b.mov",
    ]
    assert probe(out / "a.mkv")["size"] == (48, 36)
    assert "51x39 cropped to 50x38" in result.output
    odd = probe(out / "nested" / "b.mov")
    assert odd["size"] == (50, 38) and odd["frames"] == 6 and odd["audio"][0][0] == "aac"

    result = run(str(src / "a.mkv"), str(tmp_path / "a.webm"), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "a.webm")["codec"] in ("vp9", "av1")
    webm = tmp_path / "w"
    result = run(
        str(src / "nested" / "b.mov"), str(webm / "b.webm"), "--model", str(tiny_model_x2),
        "--codec", "vp9",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "audio stream #1 (aac) dropped" in result.output
    info = probe(webm / "b.webm")
    assert info["codec"] == "vp9" and info["audio"] == [] and info["frames"] == 6

    result = run(str(src / "a.mkv"), str(tmp_path / "x.png"), "--model", str(tiny_model_x2))
    assert result.exit_code == 2 and "is a video" in result.output
    result = run(str(src / "a.mkv"), str(tmp_path / "y.mkv"), "--codec", "mpeg2")
    assert result.exit_code == 2 and "--codec" in result.output


def test_skip_existing_and_failed_encode_leaves_nothing(
    tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", audio=False)
    out = tmp_path / "out"
    import srtool.infer.pipeline as pipeline

    real = pipeline.upscale_picture
    calls = []

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("encoder exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "upscale_picture", failing)
    result = run(str(clip), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 1 and "encoder exploded" in result.output
    assert not (out / "clip.mp4").exists() and not temporaries(out)
    monkeypatch.undo()

    assert run(str(clip), str(out), "--model", str(tiny_model_x2)).exit_code == 0
    stamp = (out / "clip.mp4").stat().st_mtime_ns
    result = run(str(clip), str(out), "--model", str(tiny_model_x2), "--skip-existing")
    assert result.exit_code == 0 and "0 done, 1 skipped" in result.output
    assert (out / "clip.mp4").stat().st_mtime_ns == stamp


def test_killed_encode_leaves_no_output(tmp_path: Path, tiny_model_x2: Path) -> None:
    """SIGKILL in the middle of an encode: no output file (only a hidden temporary, which the
    next run clears)."""
    clip = make_clip(tmp_path / "long.mp4", frames=400, width=64, height=48, audio=False)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "srtool", "upscale", str(clip), str(out)]
    proc = subprocess.Popen(
        [*command, "--model", str(tiny_model_x2), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and temporaries(out):
                break
            time.sleep(0.005)
        time.sleep(0.2)
        assert proc.poll() is None, "the encode ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "long.mp4").exists()
    result = run(str(clip), str(out), "--model", str(tiny_model_x2), "--skip-existing")
    assert result.exit_code == 0, result.output
    assert probe(out / "long.mp4")["frames"] == 400 and not temporaries(out)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from srtool.infer import load_upscaler
    from srtool.infer.pipeline import BatchOptions, run_batch
    from srtool.infer.jobs import collect_jobs

    upscaler = load_upscaler(sys.argv[1], tile=0)
    peaks = []
    for name in ("short.mp4", "long.mp4"):
        jobs = collect_jobs(Path(sys.argv[2]) / name, Path(sys.argv[2]) / "out")
        summary = run_batch(jobs, upscaler, BatchOptions())
        assert summary.done == 1, summary.results
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(peaks[0], peaks[1])
    """
)


def test_frames_in_flight_are_bounded(
    tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However far the decoder could run ahead of a slow upscaler, only a few decoded frames
    exist at any time."""
    import weakref

    import srtool.infer.pipeline as pipeline
    import srtool.infer.video as video

    live, peak = [0], [0]

    class Tracked(video._Frame):
        def __init__(self, *args) -> None:  # noqa: ANN002
            super().__init__(*args)
            live[0] += 1
            peak[0] = max(peak[0], live[0])
            weakref.finalize(self, lambda: live.__setitem__(0, live[0] - 1))

    real = pipeline.upscale_picture

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        time.sleep(0.002)
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "_Frame", Tracked)
    monkeypatch.setattr(pipeline, "upscale_picture", slow)
    clip = make_clip(tmp_path / "clip.mp4", frames=200, width=16, height=16, audio=False)
    result = run(str(clip), str(tmp_path / "out.mp4"), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "out.mp4")["frames"] == 200
    assert 1 <= peak[0] <= 8, peak[0]  # FRAMES_AHEAD (4) queued, a few handed on


def test_memory_stays_flat_whatever_the_length(tmp_path: Path, tiny_model_x2: Path) -> None:
    """The peak RSS after 60 frames (past the encoder's look-ahead) and after 200 more (192x144
    output frames, 83 KB each: holding them would add 16 MB, holding the decoded ones 4 MB) differ
    by little: frames stream through. (Measured: about 3 MB whether 200 or 800 frames more; 13 MB
    with an unbounded decode queue.)"""
    make_clip(tmp_path / "short.mp4", frames=60, width=96, height=72, audio=False)
    make_clip(tmp_path / "long.mp4", frames=260, width=96, height=72, audio=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tiny_model_x2), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    short_kb, long_kb = map(int, done.stdout.split())
    assert long_kb - short_kb < 8_000, (short_kb, long_kb)
    assert probe(tmp_path / "out" / "long.mp4")["frames"] == 260
