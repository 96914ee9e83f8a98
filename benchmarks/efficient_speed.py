"""Deployed SPAN sizes against the shipped compact-x4: onnxruntime CPU output MPix/s, whole image.

    python benchmarks/efficient_speed.py                              # the default candidates
    python benchmarks/efficient_speed.py --span 32x5x3 40x4x3 --threads 1 2 --rounds 9

Each candidate ``FxBxC`` (features x blocks x convs per block) is built with fixed random
weights (speed does not depend on them), collapsed with :func:`srtool.models.deploy`, exported
by srtool's own exporter (opset 17, dynamic batch/height/width) and timed in the same process as
``exports/compact-x4/model.onnx`` on one ``--size`` LR tensor (default 320x240, output 1280x960
at x4). Sessions use ORT_ENABLE_ALL and ``intra_op_num_threads`` = each ``--threads`` value. The
models are run round-robin (one run each per round) so background load hits them alike; the
figure is the median over ``--rounds``. Prints MPix/s and the ratio to compact-x4 per model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from srtool.environment import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["28x4x3", "32x4x3", "32x5x3", "36x4x3", "40x4x3", "48x4x2"]


def export_span(spec: str, scale: int, folder: Path) -> tuple[Path, int, float]:
    import torch

    from srtool.export import export_onnx
    from srtool.models import build, deploy
    from srtool.models.profile import measure_cost

    f, b, c = (int(v) for v in spec.split("x"))
    torch.manual_seed(0)
    net = deploy(build("span", scale=scale, features=f, blocks=b, convs=c)).eval()
    cost = measure_cost(net)
    path = folder / f"span-{spec}-x{scale}.onnx"
    export_onnx(net, path, check_parity=False, write_card=False)
    return path, cost.params, cost.macs_per_output_pixel


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span", nargs="+", default=DEFAULT, help="FxBxC candidates")
    ap.add_argument("--baseline", default=str(ROOT / "exports" / "compact-x4" / "model.onnx"))
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--size", default="320x240", help="LR WxH")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    w, h = (int(v) for v in args.size.split("x"))
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    out_mpix = w * h * args.scale**2 / 1e6
    print(f"CPU: {cpu_name()}; LR {w}x{h} -> {w * args.scale}x{h * args.scale}", flush=True)

    with tempfile.TemporaryDirectory(prefix="efficient-speed-") as tmp:
        models: dict[str, tuple[Path, str]] = {"compact-x4": (Path(args.baseline), "shipped")}
        for spec in args.span:
            path, params, macs = export_span(spec, args.scale, Path(tmp))
            models[f"span-{spec}"] = (path, f"{params} params, {macs:.0f} MACs/out px")
        for threads in args.threads:
            sessions = {name: session(p, threads) for name, (p, _) in models.items()}
            for s in sessions.values():
                for _ in range(args.warmup):
                    s.run(None, {"lr": x})
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(args.rounds):
                for name, s in sessions.items():
                    t = time.perf_counter()
                    s.run(None, {"lr": x})
                    times[name].append(time.perf_counter() - t)
            base = out_mpix / statistics.median(times["compact-x4"])
            print(f"\n{threads} thread(s), median of {args.rounds}:")
            for name, ts in times.items():
                med = statistics.median(ts)
                mpix = out_mpix / med
                print(
                    f"  {name:16s} {med * 1000:8.1f} ms  {mpix:6.2f} MPix/s  "
                    f"x{mpix / base:4.2f} vs compact-x4  ({models[name][1]})",
                    flush=True,
                )
            del sessions
    sys.stdout.flush()


if __name__ == "__main__":
    main()
