"""Assemble a shipped model's card (``exports/<name>/card.md``) from what made and measured it.

Every number in the card comes from a file written by srtool itself:

- the training run folder (``run.json``, ``recipe.toml``, ``metrics.jsonl``),
- the card ``srtool export`` wrote beside the ONNX file, kept as ``training/<name>/export.md``
  (network size, parity with PyTorch),
- the Markdown table of ``srtool evaluate --markdown``,
- the JSON of ``benchmarks/upscale_bench.py --model ... --json`` (CPU speed through the
  ``srtool upscale`` pipeline),
- ``commands.sh`` in the model's ``training/<name>/`` folder (the exact commands),
- where an int8 variant ships: ``training/<name>/export_int8.md`` (the card of the export that
  wrote ``model.int8.onnx``) and ``training/<name>/evaluate_int8.md`` (``srtool evaluate`` of
  fp32 and int8).

    python training/make_card.py compact-x4 --eval training/compact-x4/evaluate.md \\
        --bench training/compact-x4/bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from srtool.environment import cpu_name
from srtool.train.run import RunDir

ROOT = Path(__file__).resolve().parents[1]

# Published PSNR-Y of FSRCNN (Dong et al., ECCV 2016, Table 4): the quality floor of a shipped model
FSRCNN = {
    2: {"Set5": 37.00, "Set14": 32.63, "BSD100": 31.53},
    3: {"Set5": 33.18, "Set14": 29.37, "BSD100": 28.53},
    4: {"Set5": 30.72, "Set14": 27.61, "BSD100": 26.98},
}

# The CPU a shipped model trained on, where it is not the one its speed was last measured on (run
# folders do not record the machine).
TRAINED_ON = {"compact-x3": "AMD EPYC"}


def _metrics(run: RunDir, shipped_step: int) -> tuple[list[dict], list[dict]]:
    """Training and validation rows up to the shipped checkpoint's step: the run may have gone
    on since, and the card describes the weights it ships."""
    rows = [r for r in run.read_metrics() if r["step"] <= shipped_step]
    train = [r for r in rows if "loss_g" in r]
    val = [r for r in rows if "val_psnr" in r]
    return train, val


def _shipped_step(export_card: str) -> int:
    """The step of the exported checkpoint, from the training metadata in its export card."""
    for line in export_card.splitlines():
        if line.startswith("| training | `"):
            return int(json.loads(line.split("`")[1])["step"])
    raise SystemExit("export.md has no training metadata: export a training checkpoint")


def _export_sections(model_card: str) -> str:
    """The export card without its title and usage lines (the shipped card has its own)."""
    lines = model_card.splitlines()
    body = lines[1:]
    if "## Use" in body:
        body = body[: body.index("## Use")]
    return "\n".join(body).strip()


def _section_span(lines: list[str], heading: str) -> tuple[int, int] | None:
    """Line indices of the section that starts at the line ``heading``, to the next ``## ``."""
    if heading not in lines:
        return None
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def _without_section(card: str, heading: str) -> str:
    """``card`` without the section that starts at the line ``heading``."""
    lines = card.splitlines()
    span = _section_span(lines, heading)
    return card if span is None else "\n".join(lines[: span[0]] + lines[span[1] :])


def _section(card: str, heading: str) -> str:
    """The body of the section that starts at the line ``heading`` (empty if there is none)."""
    lines = card.splitlines()
    span = _section_span(lines, heading)
    return "" if span is None else "\n".join(lines[span[0] + 1 : span[1]]).strip()


def _int8_section(folder: Path, name: str, scale: int) -> str:
    """The shipped int8 variant's own section, when ``training/<name>/`` records one."""
    export_card, evaluation = folder / "export_int8.md", folder / "evaluate_int8.md"
    if not (export_card.is_file() and evaluation.is_file()):
        return ""
    table = evaluation.read_text(encoding="utf-8").strip()
    table = table.replace(
        f"### Benchmarks, x{scale}", f"### srtool evaluate, x{scale}, fp32 and int8"
    )
    export = _section(export_card.read_text(encoding="utf-8"), "## int8")
    return f"""## int8

`model.int8.onnx` beside `model.onnx`, for CPUs: `srtool upscale --scale {scale} --int8` (or
`--model {name} --int8`). How it was made: `training/{name}/commands.sh`.

{table}

What `srtool export` measured when it wrote the file
([`training/{name}/export_int8.md`](../../training/{name}/export_int8.md)):

{export}

"""


def render(name: str, evaluate_md: Path, bench_json: Path, status: str) -> str:
    folder = ROOT / "training" / name
    run = RunDir(folder / "run")
    export_card = (folder / "export.md").read_text(encoding="utf-8")
    recipe = run.recipe_path.read_text(encoding="utf-8").strip()
    args = run.read_args()
    commands = (folder / "commands.sh").read_text(encoding="utf-8").strip()
    shipped = _shipped_step(export_card)
    train, val = _metrics(run, shipped)
    best = next((r for r in val if r["step"] == shipped), None) or max(
        val, key=lambda r: r["val_psnr"]
    )
    last = train[-1]
    scale = int(
        next(line for line in recipe.splitlines() if line.startswith("scale")).split("=")[1]
    )
    bench = json.loads(bench_json.read_text(encoding="utf-8"))
    evaluation = evaluate_md.read_text(encoding="utf-8").strip()
    fsrcnn = FSRCNN[scale]
    int8 = _int8_section(folder, name, scale)
    if int8:  # the fp32 export's own int8 lines describe an earlier, unshipped attempt
        export_card = _without_section(export_card, "## int8")
    data = ", ".join(Path(d).name for d in args.data)
    hours = last["time_s"] / 3600
    pipe = bench["pipeline"]
    cpu = bench.get("cpu") or cpu_name()  # where it was measured, else this machine
    trained_on = TRAINED_ON.get(name, cpu)
    return f"""# {name}

{status}

```bash
srtool upscale photos/ upscaled/ --scale {scale}
```

## Quality

Measured with `srtool evaluate` (protocol below; LR images are MATLAB-bicubic, the same as the
published tables). For comparison, FSRCNN's published PSNR-Y at x{scale}: Set5 {fsrcnn["Set5"]:.2f},
Set14 {fsrcnn["Set14"]:.2f}, BSD100 {fsrcnn["BSD100"]:.2f}.

{evaluation.replace("### Benchmarks", "### srtool evaluate")}

## Speed

`srtool upscale`'s code path (decode, tiles, onnxruntime, blend, PNG encode, atomic write) on
{pipe["files"]} BSD100 photos, {cpu}, {bench.get("cores", 2)} cores, CPU provider:
**{pipe["mpix_s"]:.2f} output megapixels per second** ({pipe["output_mpix"]:.1f} MPix in
{pipe["seconds"]:.1f} s); the bare onnxruntime session reaches {bench["session"]["mpix_s"]:.2f}.
Measured with `python benchmarks/upscale_bench.py --model exports/{name}/model.onnx --count
{pipe["files"]}`.

{int8}## Training

- Data: {data} from `../shared/data` (the 591 training photos; images smaller than one
  training patch are skipped by `srtool train`), synthetic MATLAB-bicubic degradation.
  Validation: {Path(args.val or "").name} (never trained on). Set5, Set14 and BSD100 are only
  evaluated.
- {last["step"]:,} steps of {_batch(recipe)} patches, {last["time_s"]:,.0f} s of training
  ({hours:.1f} h) on a 2-core CPU ({trained_on}), no GPU. Best validation PSNR-Y
  {best["val_psnr"]:.2f} dB at step {best["step"]:,}; the shipped weights are the EMA weights of
  that checkpoint.
- Curves: [`training/{name}/curves.png`](../../training/{name}/curves.png); log:
  [`training/{name}/run/metrics.csv`](../../training/{name}/run/metrics.csv).

Commands, as run (`training/{name}/commands.sh`):

```bash
{commands}
```

Recipe as trained (`training/{name}/run/recipe.toml`, the shipped recipe plus the overrides
above):

```toml
{recipe}
```

## Export

{_export_sections(export_card)}
"""


def _batch(recipe: str) -> str:
    for line in recipe.splitlines():
        if line.replace(" ", "").startswith("batch_size="):
            return line.split("=")[1].strip()
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="model folder name, e.g. compact-x4")
    parser.add_argument("--eval", type=Path, required=True, help="srtool evaluate --markdown file")
    parser.add_argument("--bench", type=Path, required=True, help="upscale_bench.py --json file")
    parser.add_argument("--status", default="", help="one paragraph under the title")
    args = parser.parse_args()
    card = render(args.name, args.eval, args.bench, args.status)
    out = ROOT / "exports" / args.name / "card.md"
    out.write_text(card, encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
