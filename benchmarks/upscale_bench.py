"""Upscaling throughput: the full srtool pipeline against the bare session and PyTorch eager.

Prints output megapixels per second for
  pipeline  `srtool upscale`'s code path over a folder of real images (decode, tile, infer,
            blend, encode, atomic write, all overlapped),
  session   the bare onnxruntime session on one large tensor (the ceiling: no tiling, no I/O),
  torch     PyTorch eager inference of the same weights, tiled the way common SR scripts do it
            (crop tiles with padding, paste), including the same decode and PNG encode,
and the ratios pipeline/session and pipeline/torch, all measured in one run.

    python benchmarks/upscale_bench.py --images ../shared/data/BSD100 --count 20
    python benchmarks/upscale_bench.py --model exports/compact-x4/model.onnx   # no torch row
    python benchmarks/upscale_bench.py --big 2000x1500   # peak memory on one large photo
    python benchmarks/upscale_bench.py --model exports/efficient-x4/model.onnx \
        --png-deflate zlib-ng --png-level 0   # PNG stored: what the rest of the host path costs
    python benchmarks/upscale_bench.py --model exports/compact-x4/model.onnx --photo 2000x1500 \
        --repeat 1   # pipeline/session on one large photo instead of the folder
    python benchmarks/upscale_bench.py --model exports/compact-x4/model.onnx --threads 1 \\
        --memory 1000x750,2000x1500,4000x3000   # peak memory against decoded image size

Needs the ``train`` extra for the torch row and for building the default network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import srtool.imageio.png
from srtool.cli._app import parse_tile
from srtool.environment import cpu_name
from srtool.imageio import PNG_COMPRESS_LEVEL
from srtool.infer import load_upscaler, plan_upscale
from srtool.infer.jobs import collect_jobs
from srtool.infer.onnx_session import cpu_thread_count
from srtool.infer.pipeline import cpu_worker_count, run_batch

ROOT = Path(__file__).resolve().parents[1]


def build_network(args: argparse.Namespace, folder: Path):
    """A compact network with fixed random weights (speed does not depend on their values)."""
    import torch

    from srtool.export import export_onnx
    from srtool.models import build

    torch.manual_seed(0)
    net = build(args.arch, scale=args.scale, features=args.features, convs=args.convs).eval()
    path = folder / f"{args.arch}-x{args.scale}.onnx"
    export_onnx(net, path, check_parity=False, write_card=False)
    return net, path


def bench_pipeline(
    model_path: Path,
    images: Path,
    count: int,
    tile: str,
    out: Path,
    workers: int | None = None,
) -> dict:
    """`srtool upscale`'s plan and batch: ``workers`` CPU workers, or as many as it would pick."""
    jobs = collect_jobs(images, out)[:count]
    workers = workers or cpu_worker_count(jobs)
    upscalers = list(
        plan_upscale(
            str(model_path), device="cpu", tile=parse_tile(tile), cpu_workers=workers
        ).upscalers
    )
    run_batch(jobs[: len(upscalers)], upscalers)  # warm-up: sessions and allocators
    shutil.rmtree(out, ignore_errors=True)
    summary = run_batch(jobs, upscalers)
    assert not summary.failed, summary.failed
    return {
        "mpix_s": summary.megapixels_per_second,
        "files": summary.done,
        "seconds": summary.seconds,
        "output_mpix": summary.output_megapixels,
        "workers": len(upscalers),
    }


def _median_run(runs: list[dict]) -> dict:
    """The run with the median speed (its other numbers belong to it)."""
    ordered = sorted(runs, key=lambda run: run["mpix_s"])
    return ordered[len(ordered) // 2]


def bench_session(model_path: Path, height: int, width: int, repeat: int) -> dict:
    """The bare onnxruntime session (``session.run``, nothing of srtool's) on one tensor."""
    model = load_upscaler(str(model_path), device="cpu", tile=0).model
    session = model.session
    name = session.get_inputs()[0].name
    tensor = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    session.run(None, {name: tensor})
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, {name: tensor})
        times.append(time.perf_counter() - start)
    out_mpix = height * width * model.info.scale**2 / 1e6
    return {"mpix_s": out_mpix / statistics.median(times), "shape": [height, width]}


def bench_torch(net, images: list[Path], out: Path, tile: int = 512, pad: int = 10) -> dict:
    """Tiled eager inference as common SR scripts run it (crop with padding, paste)."""
    import torch

    torch.set_num_threads(cpu_thread_count())
    out.mkdir(parents=True, exist_ok=True)
    scale = net.scale
    total_mpix = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
            _, _, h, w = x.shape
            result = torch.empty(1, 3, h * scale, w * scale)
            for y0 in range(0, h, tile):
                for x0 in range(0, w, tile):
                    y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                    py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
                    py1, px1 = min(y1 + pad, h), min(x1 + pad, w)
                    sr = net(x[:, :, py0:py1, px0:px1])
                    oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
                    result[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = sr[
                        :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
                    ]
            pixels = (result[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            Image.fromarray(pixels).save(out / path.name)
            total_mpix += pixels.shape[0] * pixels.shape[1] / 1e6
    seconds = time.perf_counter() - start
    return {"mpix_s": total_mpix / seconds, "seconds": seconds}


def _high_water_mib(pid: int) -> float:
    """A running process's peak resident memory (VmHWM). Read while it runs because getrusage
    would report this benchmark's own, larger, peak: Linux carries it across fork and exec."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # exited between poll() and open()
        pass
    return 0.0


def bench_big(model_path: Path, size: str, folder: Path, photo: Path, tile: str) -> dict:
    """Peak resident memory of ``srtool upscale`` (a fresh process, as a user runs it) on one
    large real photo (resized up to ``size``)."""
    width, height = (int(v) for v in size.lower().split("x"))
    big = folder / "big.png"
    Image.open(photo).convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(big)
    command = [sys.executable, "-m", "srtool", "upscale", str(big), str(folder / "big_out")]
    command += ["--model", str(model_path), "--device", "cpu", "--tile", tile, "--quiet"]
    start = time.perf_counter()
    child = subprocess.Popen(command)
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, _high_water_mib(child.pid))
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    scale = load_upscaler(str(model_path), device="cpu").scale
    out_bytes = width * height * scale**2 * 3
    return {
        "input": f"{width}x{height}",
        "tile": tile,
        "mpix_s": width * height * scale**2 / 1e6 / seconds,
        "peak_rss_mib": peak,
        "uint8_output_mib": out_bytes / 2**20,
        "float32_output_mib": out_bytes * 4 / 2**20,
    }


_PEAK_CHILD = """
import atexit, sys

def report():
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                sys.stderr.write("srtool-bench-peak-kib " + line.split()[1] + "\\n")

atexit.register(report)
from srtool.cli import main

sys.argv = ["srtool", *sys.argv[1:]]
main()
"""


def _upscale_peak_mib(command: list[str]) -> tuple[float, float]:
    """(peak resident MiB, seconds) of ``srtool upscale`` in a fresh process. The process
    reports its own high-water mark (VmHWM) as it exits: no late peak escapes a poll, and none
    of this benchmark's own memory is counted."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *command], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"srtool {' '.join(command)} failed:\n{proc.stderr}")
    for line in proc.stderr.splitlines():
        if line.startswith("srtool-bench-peak-kib "):
            return int(line.split()[1]) / 1024, seconds
    raise RuntimeError("the child did not report its peak memory")


def bench_memory(
    model_path: Path,
    sizes: list[str],
    folder: Path,
    photo: Path,
    tile: str,
    threads: int | None,
    workers: int | None = None,
) -> dict:
    """Peak resident memory of ``srtool upscale`` per input size, against the decoded bytes of
    one input and its output (width x height x 3 samples of 1 byte, or 2 for 16-bit). A size is
    ``WxH``, ``WxH:16`` for a 16-bit PNG, ``WxH*N`` for a folder of N such images (the batch
    pipeline overlaps decoding, inference and encoding of consecutive images). A 64x48 input
    first gives the start-up cost (interpreter, libraries, model session)."""
    import cv2

    scale = load_upscaler(str(model_path), device="cpu").scale
    rows = []
    for spec in ["64x48", *sizes]:
        size, _, count = spec.partition("*")
        size, _, depth = size.partition(":")
        width, height = (int(v) for v in size.lower().split("x"))
        sample_bytes = 2 if depth == "16" else 1
        source = folder / f"in-{spec.replace('*', 'x').replace(':', '-')}"
        source.mkdir()
        with Image.open(photo) as image:
            rgb = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC))
        for index in range(int(count or 1)):
            picture = np.roll(rgb, index * 7, axis=1)  # not the same bytes twice
            if sample_bytes == 2:
                cv2.imwrite(
                    str(source / f"{index}.png"), picture[:, :, ::-1].astype(np.uint16) * 257
                )
            else:
                Image.fromarray(picture).save(source / f"{index}.png")
        command = ["upscale", str(source), str(folder / f"out-{source.name}")]
        command += ["--model", str(model_path), "--device", "cpu", "--tile", tile, "--quiet"]
        if threads:
            command += ["--threads", str(threads)]
        if workers:
            command += ["--workers", str(workers)]
        peak, seconds = _upscale_peak_mib(command)
        input_mib = width * height * 3 * sample_bytes / 2**20
        output_mib = input_mib * scale**2
        rows.append(
            {
                "input": spec,
                "output": f"{width * scale}x{height * scale}",
                "seconds": seconds,
                "peak_rss_mib": peak,
                "input_mib": input_mib,
                "output_mib": output_mib,
            }
        )
    start_up = rows[0]["peak_rss_mib"]
    for row in rows:
        decoded = row["input_mib"] + row["output_mib"]
        row["peak_per_decoded"] = row["peak_rss_mib"] / decoded
        row["above_start_up_per_decoded"] = (row["peak_rss_mib"] - start_up) / decoded
    return {
        "tile": tile,
        "scale": scale,
        "workers": workers,
        "start_up_mib": start_up,
        "sizes": rows[1:],
    }


def print_memory(memory: dict) -> None:
    print(
        f"peak RSS of `srtool upscale --tile {memory['tile']}` (fresh process, x{memory['scale']},"
        f" --workers {memory.get('workers') or 'auto'},"
        f" PNG in and out); start-up (one 64x48 input): {memory['start_up_mib']:.0f} MiB; "
        "in+out: decoded bytes of one input and its output"
    )
    print(
        "input           output       seconds  peak MiB  in+out MiB  peak/(in+out)  "
        "(peak-start-up)/(in+out)"
    )
    for row in memory["sizes"]:
        decoded = row["input_mib"] + row["output_mib"]
        print(
            f"{row['input']:<15} {row['output']:<12} {row['seconds']:7.1f}  "
            f"{row['peak_rss_mib']:8.0f}  {decoded:10.0f}  {row['peak_per_decoded']:13.2f}  "
            f"{row['above_start_up_per_decoded']:24.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "BSD100")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--model", type=Path, help="an ONNX model (skips the torch row)")
    parser.add_argument("--arch", default="compact")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--features", type=int, default=48)
    parser.add_argument("--convs", type=int, default=12)
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big", help="also measure peak memory on one WxH photo, e.g. 2000x1500")
    parser.add_argument(
        "--memory",
        help="only measure peak memory per image against its decoded size, for comma-separated "
        "input sizes, e.g. 1000x750,2000x1500,4000x3000 (WxH:16 for 16-bit, WxH*3 for a batch)",
    )
    parser.add_argument("--threads", type=int, help="inference threads for --memory")
    parser.add_argument(
        "--photo",
        help="measure pipeline/session on one WxH photo (the first image resized) instead of "
        "the folder, e.g. 2000x1500",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="pipeline and session alternate this many times; the medians count (a busy "
        "machine then slows both alike)",
    )
    parser.add_argument(
        "--png-level",
        type=int,
        help=f"deflate level of the pipeline's PNG files instead of srtool's {PNG_COMPRESS_LEVEL}; "
        "0 with --png-deflate zlib-ng stores them without deflate, which leaves the rest of the "
        "host path",
    )
    parser.add_argument(
        "--png-deflate",
        choices=["isal", "zlib-ng"],
        help="the PNG deflater instead of srtool's (ISA-L where it has wheels; zlib-ng elsewhere)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="CPU workers of the pipeline row and of --memory, as `srtool upscale --workers` "
        "(default: its choice)",
    )
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    if args.png_deflate == "zlib-ng":
        from zlib_ng import zlib_ng

        srtool.imageio.png._deflate_lib = zlib_ng
    elif args.png_deflate == "isal":
        from isal import isal_zlib

        srtool.imageio.png._deflate_lib = isal_zlib
    if args.png_level is not None:
        srtool.imageio.png.PNG_COMPRESS_LEVEL = args.png_level

    if args.memory:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            model_path = args.model or build_network(args, folder)[1]
            photo = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")[0]
            memory = bench_memory(
                model_path,
                args.memory.split(","),
                folder,
                photo,
                args.tile,
                args.threads,
                args.workers,
            )
        print(f"model: {model_path.name}  cpu: {cpu_name()}")
        print_memory(memory)
        if args.json:
            args.json.write_text(json.dumps({"memory": memory, "cpu": cpu_name()}, indent=2))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        net = None
        if args.model is None:
            net, model_path = build_network(args, folder)
        else:
            model_path = args.model
        images = sorted(
            p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".bmp"}
        )
        images = images[: args.count]
        if args.photo:
            width, height = (int(v) for v in args.photo.lower().split("x"))
            single = folder / "photo"
            single.mkdir()
            with Image.open(images[0]) as first:
                first.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(
                    single / "photo.png"
                )
            args.images, args.count, images = single, 1, [single / "photo.png"]
        sizes = [Image.open(p).size for p in images]
        width, height = max(sizes, key=lambda s: s[0] * s[1])

        results: dict[str, dict] = {}
        rounds: list[tuple[dict, dict]] = []
        for _ in range(max(1, args.rounds)):
            shutil.rmtree(folder / "out", ignore_errors=True)
            rounds.append(
                (
                    bench_pipeline(
                        model_path,
                        args.images,
                        args.count,
                        args.tile,
                        folder / "out",
                        args.workers,
                    ),
                    bench_session(model_path, height, width, args.repeat),
                )
            )
        results["pipeline"] = _median_run([p for p, _ in rounds])
        results["session"] = _median_run([s for _, s in rounds])
        results["round_ratios"] = [p["mpix_s"] / s["mpix_s"] for p, s in rounds]
        if net is not None:
            results["torch"] = bench_torch(net, images, folder / "torch_out")
        if args.big:
            results["big"] = bench_big(model_path, args.big, folder, images[0], args.tile)

    pipe = results["pipeline"]["mpix_s"]
    print(
        f"model: {model_path.name}  images: {len(images)} from {args.images}  "
        f"cores: {cpu_thread_count()}  png: {srtool.imageio.png._deflate_lib.__name__} level "
        f"{srtool.imageio.png.PNG_COMPRESS_LEVEL}"
    )
    print(
        f"pipeline  {pipe:7.3f} output MPix/s  ({results['pipeline']['output_mpix']:.1f} MPix in "
        f"{results['pipeline']['seconds']:.1f} s, {results['pipeline']['workers']} worker(s))"
    )
    session = results["session"]["mpix_s"]
    print(f"session   {session:7.3f} output MPix/s  (one {width}x{height} tensor)")
    ratios = ", ".join(f"{r:.2f}" for r in results["round_ratios"])
    print(f"ratio pipeline/session = {pipe / session:.2f}  (medians; rounds: {ratios})")
    if "torch" in results:
        torch_rate = results["torch"]["mpix_s"]
        print(f"torch     {torch_rate:7.3f} output MPix/s  (eager, tiled, same weights, same I/O)")
        print(f"ratio pipeline/torch   = {pipe / torch_rate:.2f}")
    if "big" in results:
        big = results["big"]
        print(
            f"big {big['input']} (srtool upscale --tile {big['tile']}, whole process incl. "
            f"start-up): {big['mpix_s']:.3f} MPix/s, peak RSS {big['peak_rss_mib']:.0f} MiB "
            f"(uint8 output alone {big['uint8_output_mib']:.0f} MiB, float32 output "
            f"{big['float32_output_mib']:.0f} MiB)"
        )
    if args.json:
        args.json.write_text(
            json.dumps({**results, "cores": cpu_thread_count(), "cpu": cpu_name()}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
