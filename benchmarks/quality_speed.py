"""Quality against speed: PSNR-Y on a benchmark against onnxruntime CPU output MPix/s, one plot.

    python benchmarks/quality_speed.py --data-root ../shared/data            # BSD100, all shipped
    python benchmarks/quality_speed.py --data-root ../shared/data --bench Set5   # quick check
    python benchmarks/quality_speed.py --data-root ../shared/data \\
        --model span-x4=/tmp/span/model.onnx --model efficient-x4=runs/eff/model.onnx

Points: every shipped model (each ``exports/<name>/model.onnx``), bicubic at each scale present
(the MATLAB-style bicubic of ``srtool evaluate``'s bicubic row, ``srtool.resize.imresize``) and
each ``--model LABEL=FILE.onnx`` (repeatable; ``FILE.onnx`` alone is labelled as
``srtool evaluate`` labels it).

Quality: PSNR-Y on ``--bench`` (default BSD100; Set5 for a quick run) by the paper protocol,
computed by :func:`srtool.evaluate.evaluate` (the library behind ``srtool evaluate --bench``), one
call per scale. Datasets resolve like ``srtool evaluate``: ``--data-root``, else ``$SRTOOL_DATA``,
else srtool's cache folder.

Speed: one LR tensor of ``--size`` (default 320x240; output 4x/9x/16x that at x2/x3/x4) through
an onnxruntime CPU session per model (ORT_ENABLE_ALL, ``intra_op_num_threads`` = ``--threads``,
default 1); bicubic upscales a uint8 image of the same size through the same call
``srtool evaluate`` times. Everything is run round-robin (one run each per round, after
``--warmup`` runs each) so background load hits all alike; the figure is the median of
``--rounds`` (default 7), as output MPix/s. The ratio column is against the shipped model of the
same scale (``compact-xN`` where present).

Writes ``quality-speed-<bench>.png`` (x: output MPix/s, log scale; y: PSNR-Y; one colour and
marker per scale), ``.json`` and ``.md`` into ``--out`` (default ``benchmarks/results/``) and
prints the table with the CPU name. The plot needs matplotlib (``pip install 'srtool[train]'``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srtool.environment import cpu_name

ROOT = Path(__file__).resolve().parents[1]
MARKERS = {2: "o", 3: "s", 4: "^"}
COLOURS = {2: "tab:blue", 3: "tab:green", 4: "tab:red"}


@dataclass
class Entry:
    """One point of the plot / one row of the table."""

    label: str
    kind: str  # "shipped" | "extra" | "bicubic"
    scale: int
    path: str | None = None  # the ONNX file; None for bicubic
    params: int | None = None
    psnr_y: float | None = None
    ms: float | None = None  # median time of one LR tensor
    mpix_s: float | None = None  # output MPix/s
    ratio: float | None = None  # mpix_s / that of the shipped model of the same scale


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="an extra ONNX model to place (repeatable); FILE alone is labelled by its name",
    )
    ap.add_argument("--bench", default="BSD100", help="benchmark for PSNR-Y (default BSD100)")
    ap.add_argument("--data-root", default=None, help="dataset root (as for srtool evaluate)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument(
        "--exports",
        type=Path,
        default=ROOT / "exports",
        help="folder of shipped models (<name>/model.onnx); default the checkout's exports/",
    )
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per model first")
    ap.add_argument("--size", default="320x240", help="LR WxH of the timed tensor")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.warmup < 0:
        ap.error("--threads and --rounds must be >= 1, --warmup >= 0")
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {args.size}: expected WxH, e.g. 320x240")
    if w < 8 or h < 8:
        ap.error(f"--size {args.size}: at least 8x8")
    args.wh = (w, h)
    return args


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(
            "quality_speed.py: the plot needs matplotlib, which is not installed "
            "(pip install 'srtool[train]' or pip install matplotlib)"
        )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _describe(path: Path, label: str, kind: str) -> Entry:
    """Scale and parameter count from the model (metadata; the scale probed when absent)."""
    from srtool.infer.onnx_session import OnnxModel

    info = OnnxModel(path, device="cpu", threads=1).info
    params = _int_or_none(info.metadata.get("srtool.params"))
    return Entry(label=label, kind=kind, scale=info.scale, path=str(path), params=params)


def gather(exports: Path, extra: Sequence[str]) -> list[Entry]:
    """Shipped models (sorted by scale, then name), then the extra ones in the order given."""
    from srtool.errors import UsageError
    from srtool.evaluate.methods import label_for

    entries: list[Entry] = []
    if exports.is_dir():
        for folder in sorted(p for p in exports.iterdir() if (p / "model.onnx").is_file()):
            entries.append(_describe(folder / "model.onnx", folder.name, "shipped"))
            if (folder / "model.int8.onnx").is_file():  # what `srtool upscale --int8` runs
                entries.append(
                    _describe(folder / "model.int8.onnx", f"{folder.name} int8", "shipped")
                )
    entries.sort(key=lambda e: (e.scale, e.label))
    for spec in extra:
        label, sep, file = spec.partition("=")
        if not sep:
            label, file = label_for(spec), spec
        path = Path(file).expanduser()
        if not label or not path.is_file():
            raise UsageError(f"--model {spec}: expected LABEL=FILE.onnx with an existing file")
        entries.append(_describe(path, label, "extra"))
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise UsageError(f"two models share a label: {', '.join(labels)}")
    ordered: list[Entry] = []
    for scale in sorted({e.scale for e in entries}):  # per scale: bicubic, shipped, extra
        ordered.append(Entry(label="bicubic", kind="bicubic", scale=scale))
        ordered += [e for e in entries if e.scale == scale]
    return ordered


def measure_quality(
    entries: Sequence[Entry], bench: str, data_root: str | None
) -> tuple[list[str], dict[str, Any]]:
    """PSNR-Y of every entry by srtool's evaluate, one call per scale (bicubic is its first
    row). Returns the report notes and the benchmark facts of the first call."""
    from srtool.evaluate import evaluate

    notes: list[str] = []
    facts: dict[str, Any] = {}
    for scale in sorted({e.scale for e in entries}):
        nets = [e for e in entries if e.scale == scale and e.path is not None]
        paths = list(dict.fromkeys(e.path for e in nets))
        print(f"PSNR-Y on {bench} x{scale}: bicubic + {len(paths)} model(s)", flush=True)
        report = evaluate(
            [bench], paths, scale=scale, data_root=data_root, with_ms_ssim=False, device="cpu"
        )
        name = report.benchmarks[0]["name"]
        facts = facts or report.benchmarks[0]
        # report.methods: bicubic, then one row per distinct model path, in the order given
        psnr = {None: report.score(name, report.methods[0].label).mean("psnr_y")}
        for path, info in zip(paths, report.methods[1:], strict=True):
            psnr[path] = report.score(name, info.label).mean("psnr_y")
        for e in entries:
            if e.scale == scale:
                e.psnr_y = psnr[e.path]
        notes += [f"x{scale}: {n}" for n in report.notes if not n.startswith("LPIPS")]
    return notes, facts


def _runner(entry: Entry, size: tuple[int, int], threads: int) -> Callable[[], object]:
    w, h = size
    rng = np.random.default_rng(0)
    if entry.path is None:
        from srtool.evaluate.methods import baseline_method

        run = baseline_method("bicubic", entry.scale).run  # what evaluate times for its row
        lr_u8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        return lambda: run(lr_u8)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(entry.path, opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    channels = inp.shape[1] if isinstance(inp.shape[1], int) else 3
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    x = rng.random((1, channels, h, w), dtype=np.float32).astype(dtype)
    feed = {inp.name: x}
    return lambda: session.run(None, feed)


def measure_speed(
    entries: Sequence[Entry], size: tuple[int, int], threads: int, rounds: int, warmup: int
) -> None:
    """Median time of one ``size`` LR tensor per entry, all run round-robin."""
    runners = [_runner(e, size, threads) for e in entries]
    for run in runners:
        for _ in range(warmup):
            run()
    times: list[list[float]] = [[] for _ in entries]
    for _ in range(rounds):
        for run, ts in zip(runners, times, strict=True):
            start = time.perf_counter()
            run()
            ts.append(time.perf_counter() - start)
    w, h = size
    for e, ts in zip(entries, times, strict=True):
        med = statistics.median(ts)
        e.ms = med * 1000
        e.mpix_s = w * h * e.scale**2 / 1e6 / med
    shipped = _reference_models(entries)
    for e in entries:
        ref = shipped.get(e.scale)
        e.ratio = e.mpix_s / ref.mpix_s if ref is not None and ref.mpix_s else None


def _reference_models(entries: Sequence[Entry]) -> dict[int, Entry]:
    """The shipped model each scale's ratio is against: the baseline ``compact-xN`` when
    shipped, else the first shipped model of that scale."""
    refs: dict[int, Entry] = {}
    for e in entries:
        if e.kind != "shipped":
            continue
        if e.scale not in refs or e.label == f"compact-x{e.scale}":
            refs[e.scale] = e
    return refs


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(entries: Sequence[Entry]) -> list[list[str]]:
    refs = _reference_models(entries)
    rows = []
    for e in entries:
        ref = refs.get(e.scale)
        ratio = "-" if e.ratio is None or ref is None else f"{e.ratio:.2f}x {ref.label}"
        rows.append(
            [
                e.label,
                f"x{e.scale}",
                "-" if e.params is None else f"{e.params:,}",
                _fmt(e.psnr_y, ".2f"),
                _fmt(e.mpix_s, ".2f"),
                ratio,
            ]
        )
    return rows


HEADER = ["model", "scale", "params", "PSNR-Y {bench}", "MPix/s", "speed vs shipped"]


def text_table(entries: Sequence[Entry], bench: str) -> str:
    header = [h.format(bench=bench) for h in HEADER]
    rows = [header, *table_rows(entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    return "\n".join(lines)


def markdown(entries: Sequence[Entry], bench: str, title: str, notes: Sequence[str]) -> str:
    header = [h.format(bench=bench) for h in HEADER]
    out = [f"# {title}", "", "| " + " | ".join(header) + " |"]
    out.append("| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |")
    out += ["| " + " | ".join(row) + " |" for row in table_rows(entries)]
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    return "\n".join(out) + "\n"


def _shown(path: str | None) -> str | None:
    """A model path as the tables record it: relative to the repository when inside it, else
    the file name (no paths of the measuring machine in committed results)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else resolved.name


def plot(entries: Sequence[Entry], path: Path, title: str, bench: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    for scale in sorted({e.scale for e in entries}):
        points = [e for e in entries if e.scale == scale and e.psnr_y is not None and e.mpix_s]
        if not points:
            continue
        ax.scatter(
            [e.mpix_s for e in points],
            [e.psnr_y for e in points],
            marker=MARKERS.get(scale, "D"),
            color=COLOURS.get(scale, f"C{scale % 10}"),
            s=60,
            label=f"x{scale}",
            zorder=3,
        )
        for e in points:
            ax.annotate(
                e.label,
                (e.mpix_s, e.psnr_y),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    def tick(value: float, _pos: object) -> str:  # plain numbers; minor ticks at 2 and 5 only
        lead = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
        return f"{value:g}" if round(lead) in (1, 2, 5) else ""

    ax.xaxis.set_major_formatter(FuncFormatter(tick))
    ax.xaxis.set_minor_formatter(FuncFormatter(tick))
    ax.set_xlabel("output MPix/s (onnxruntime CPU; bicubic: srtool.resize)")
    ax.set_ylabel(f"PSNR-Y on {bench} (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="scale")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure, print, write; returns what the JSON file holds."""
    args = parse_args(argv)
    require_matplotlib()
    import onnxruntime

    from srtool import __version__

    entries = gather(args.exports, args.model)
    if not entries:
        raise SystemExit(f"quality_speed.py: no model in {args.exports} and no --model given")
    notes, facts = measure_quality(entries, args.bench, args.data_root)
    bench = facts.get("name", args.bench)
    w, h = args.wh
    print(
        f"speed: LR {w}x{h}, {args.threads} thread(s), median of {args.rounds} round(s)",
        flush=True,
    )
    measure_speed(entries, args.wh, args.threads, args.rounds, args.warmup)

    cpu = cpu_name()
    title = (
        f"PSNR-Y {bench} vs output MPix/s: {cpu}, {args.threads} thread(s), "
        f"LR {w}x{h}, median of {args.rounds}"
    )
    print(f"\nCPU: {cpu}; {args.threads} thread(s); LR {w}x{h}; median of {args.rounds}")
    print(text_table(entries, bench))
    for note in notes:
        print(f"note: {note}")

    result: dict[str, Any] = {
        "benchmark": bench,
        "benchmark_facts": facts,
        "rows": [{**asdict(e), "path": _shown(e.path)} for e in entries],
        "notes": notes,
        "speed": {
            "lr_size": [w, h],
            "threads": args.threads,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "statistic": "median, models run round-robin",
            "graph_optimization": "ORT_ENABLE_ALL",
        },
        "environment": {
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "srtool": __version__,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"quality-speed-{bench}"
    png = stem.with_suffix(".png")
    plot(entries, png, title, bench)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(entries, bench, title, notes))
    result["files"] = [str(png), str(stem.with_suffix(".json")), str(stem.with_suffix(".md"))]
    print("wrote " + ", ".join(result["files"]))
    return result


if __name__ == "__main__":
    from srtool.errors import SrtoolError

    try:
        main()
    except SrtoolError as exc:
        sys.exit(f"quality_speed.py: {exc}")
