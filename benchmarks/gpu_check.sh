#!/usr/bin/env bash
# srtool on one NVIDIA GPU: the checks CI without a GPU cannot make. Prints PASS / FAIL / SKIP /
# INFO lines and a summary; exit 0 when nothing failed. About 5-10 minutes on a modern GPU.
#
#   bash benchmarks/gpu_check.sh [options]          (from the root of an srtool checkout)
#
# Checks, in order:
#   doctor     `srtool doctor --device cuda` says CUDA works
#   session    a CUDA session of the shipped compact-x4 really runs on CUDA (no CPU fallback)
#   parity     Set5 upscaled on CUDA and on CPU agree (PSNR, fp32; TF32 keeps it below infinity)
#   fp16       the fp16 variant on CUDA: no NaN/Inf on Set5, close to fp32; --fp16 really uses it
#   bigtensor  --tile 0 on an image whose whole-image tensors pass 2^31 values (RRDBNet x4):
#              srtool cuts the tiles (one warning), the output is finite and matches small tiles
#   oom        out-of-memory retry: most of the GPU taken, a big tile still finishes
#   pytest     `pytest -m gpu` (tests/test_cuda.py) runs, and does not just skip
#   train      compact_x4 training smoke on CUDA with AMP: bf16 (auto) and fp16 + GradScaler
#
# Options:
#   --python PY    the Python to use (default: $PY, else ./.venv/bin/python, else python3);
#                  with --wheels or when it lacks srtool's dependencies, a venv is made from it
#   --wheels DIR   a folder of wheels for an offline install (pip --no-index --find-links DIR):
#                  onnxruntime-gpu and its nvidia-* CUDA wheels, torch, srtool's dependencies
#   --shared DIR   the folder holding data/Set5 and data/T91 (default: ../shared)
#   --out DIR      where logs and outputs go (default: ./gpu_check_out, replaced); if the
#                  variable OUT names a folder, summary.txt and logs.tar.gz are copied there
#   --only LIST    comma-separated checks to run (names above), e.g. --only doctor,fp16
#   --skip LIST    comma-separated checks to leave out
#   --budget S     seconds after which the remaining checks are skipped (default: 900)
#   --dry-run      parse the options, find Python, print the plan, and stop (no GPU needed)
#   -h, --help     this text
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

ALL_CHECKS="doctor session parity fp16 bigtensor oom pytest train"
PYTHON_ARG=${PY:-}
WHEELS=""
SHARED_ARG=""
OUT_ARG=""
ONLY=""
SKIP=""
BUDGET_S=900
DRY_RUN=0

die() { echo "gpu_check: $*" >&2; exit 2; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --python) need_value "$@"; PYTHON_ARG=$2; shift 2 ;;
    --python=*) PYTHON_ARG=${1#*=}; shift ;;
    --wheels) need_value "$@"; WHEELS=$2; shift 2 ;;
    --wheels=*) WHEELS=${1#*=}; shift ;;
    --shared) need_value "$@"; SHARED_ARG=$2; shift 2 ;;
    --shared=*) SHARED_ARG=${1#*=}; shift ;;
    --out) need_value "$@"; OUT_ARG=$2; shift 2 ;;
    --out=*) OUT_ARG=${1#*=}; shift ;;
    --only) need_value "$@"; ONLY=$2; shift 2 ;;
    --only=*) ONLY=${1#*=}; shift ;;
    --skip) need_value "$@"; SKIP=$2; shift 2 ;;
    --skip=*) SKIP=${1#*=}; shift ;;
    --budget) need_value "$@"; BUDGET_S=$2; shift 2 ;;
    --budget=*) BUDGET_S=${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
case "$BUDGET_S" in ''|*[!0-9]*) die "--budget must be a whole number of seconds" ;; esac
for name in ${ONLY//,/ } ${SKIP//,/ }; do
  case " $ALL_CHECKS " in *" $name "*) ;; *) die "unknown check '$name' (checks: $ALL_CHECKS)" ;; esac
done
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || die "--wheels: no folder $WHEELS"
[ -f pyproject.toml ] && grep -q '^name = "srtool"' pyproject.toml || die "run from the root of the srtool checkout"
ROOT=$(pwd)
WHEELS=${WHEELS:+$(cd "$WHEELS" && pwd)}

# wanted NAME: is check NAME selected by --only / --skip?
wanted() {
  if [ -n "$ONLY" ]; then case ",$ONLY," in *",$1,"*) ;; *) return 1 ;; esac; fi
  case ",$SKIP," in *",$1,"*) return 1 ;; esac
  return 0
}

# find_python: the first of --python/$PY, ./.venv/bin/python, python3, python that is >= 3.11
find_python() {
  local candidates=() c
  [ -n "$PYTHON_ARG" ] && candidates=("$PYTHON_ARG")
  candidates+=("$ROOT/.venv/bin/python" python3 python)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 \
      && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
    [ -n "$PYTHON_ARG" ] && [ "$c" = "$PYTHON_ARG" ] && return 3
  done
  return 1
}
BASE_PY=$(find_python)
case $? in
  0) ;;
  3) die "--python $PYTHON_ARG: not found or older than 3.11" ;;
  *) die "no Python 3.11+ found (use --python)" ;;
esac
SHARED=$(cd "${SHARED_ARG:-$ROOT/../shared}" 2>/dev/null && pwd) || SHARED=""
ACC=${OUT_ARG:-$ROOT/gpu_check_out}

if [ "$DRY_RUN" = 1 ]; then
  echo "python:  $BASE_PY ($("$BASE_PY" -c 'import platform; print(platform.python_version())'))"
  echo "wheels:  ${WHEELS:-none (package index, or the Python as it is)}"
  echo "shared:  ${SHARED:-not found (checks needing Set5 / T91 will be skipped)}"
  echo "out:     $ACC"
  echo "budget:  ${BUDGET_S}s"
  printf 'checks: '
  for name in $ALL_CHECKS; do wanted "$name" && printf ' %s' "$name"; done
  echo
  exit 0
fi

# ---------------------------------------------------------------------------- bookkeeping
export PYTHONUNBUFFERED=1 COLUMNS=200  # Rich wraps at 80 columns when not on a terminal
T0=$(date +%s)
rm -rf "$ACC"; mkdir -p "$ACC"/{log,in,up,runs,models}
SUMMARY=$ACC/summary.txt; : >"$SUMMARY"
copy_back() {
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && [ "$OUT" != "$ACC" ]; then
    cp "$SUMMARY" "$OUT/summary.txt"
    tar czf "$OUT/logs.tar.gz" -C "$ACC" log summary.txt 2>/dev/null
  fi
}
trap copy_back EXIT
trap 'exit 143' TERM INT  # a timeout still copies the summary back

say()  { echo "$*" | tee -a "$SUMMARY"; }
pass() { say "PASS  $1${2:+ - $2}"; }
fail() { say "FAIL  $1${2:+ - $2}"; }
skip() { say "SKIP  $1${2:+ - $2}"; }
note() { say "INFO  $1${2:+ - $2}"; }
elapsed() { echo $(( $(date +%s) - T0 )); }
# ready NAME: selected, and time left
ready() {
  wanted "$1" || return 1
  if [ "$(elapsed)" -ge "$BUDGET_S" ]; then skip "$1" "time budget (${BUDGET_S}s) spent"; return 1; fi
  return 0
}
# run NAME LIMIT CMD...: CMD with a time limit, output in log/NAME.{out,err}; returns its rc
run() {
  local name=$1 limit=$2 t rc; shift 2
  t=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$ACC/log/$name.out" 2>"$ACC/log/$name.err"
  rc=$?
  echo "[$(elapsed)s] $name: rc=$rc in $(( $(date +%s) - t ))s" >>"$ACC/log/timeline.txt"
  return $rc
}
tail_err() { tail -n 3 "$ACC/log/$1.err" 2>/dev/null | tr '\n' ' ' | cut -c1-300; }
last_out() { tail -n 1 "$ACC/log/$1.out" 2>/dev/null | cut -c1-400; }

# ---------------------------------------------------------------------------- Python + installs
if nvidia-smi -L >"$ACC/log/nvidia-smi.txt" 2>&1; then
  note "gpu" "$(head -n 1 "$ACC/log/nvidia-smi.txt"); driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
else
  note "gpu" "nvidia-smi lists no GPU (the checks below say what works)"
fi
PIP=(install -q --disable-pip-version-check)
[ -n "$WHEELS" ] && PIP+=(--no-index --find-links "$WHEELS")
ready_python() { "$1" -c 'import srtool, onnxruntime, numpy, PIL, typer, rich' 2>/dev/null; }
if [ -z "$WHEELS" ] && ready_python "$BASE_PY"; then
  VPY=$BASE_PY
  note "python" "$VPY as it is"
else
  "$BASE_PY" -m venv "$ACC/venv" || { fail "install" "$BASE_PY -m venv failed"; exit 2; }
  VPY=$ACC/venv/bin/python
  # the CUDA provider's libraries come with onnxruntime-gpu's extras; torch for export/training
  if ! run pip 1200 "$VPY" -m pip "${PIP[@]}" -e ".[cuda,dev]"; then
    run pip-nodeps 600 "$VPY" -m pip "${PIP[@]}" --no-build-isolation -e ".[cuda,dev]" \
      || { fail "install" "$(tail_err pip) $(tail_err pip-nodeps)"; exit 2; }
  fi
  note "python" "venv $ACC/venv from $BASE_PY${WHEELS:+ (offline, wheels from $WHEELS)}"
fi
SRT=("$VPY" -m srtool)
HAS_TORCH=0; "$VPY" -c 'import torch' 2>/dev/null && HAS_TORCH=1
SHIPPED=$ROOT/exports/compact-x4/model.onnx

# ---------------------------------------------------------------------------- helpers (Python)
H=$ACC/helpers.py
cat >"$H" <<'PYEOF'
"""Measurements for gpu_check.sh: python helpers.py COMMAND ARGS... (one JSON line out)."""
import json, logging, math, os, sys, time
from pathlib import Path

import numpy as np


def emit(ok=True, **kw):
    print(json.dumps(dict(ok=bool(ok), **kw), default=str))
    sys.exit(0 if ok else 1)


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def load01(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0


def cmd_session(model):
    """A CUDA session on the shipped model: providers, fallback, options, free memory."""
    from srtool.infer import load_upscaler
    from srtool.infer.onnx_session import cuda_free_memory
    try:
        up = load_upscaler(model, device="cuda")
    except Exception as exc:  # the message a user would see
        emit(ok=False, error=f"{type(exc).__name__}: {exc}")
    s = up.model.session
    opts = s.get_provider_options().get("CUDAExecutionProvider", {})
    keep = ("device_id", "cudnn_conv_algo_search", "arena_extend_strategy", "use_tf32")
    emit(ok=s.get_providers()[0] == "CUDAExecutionProvider" and not s._enable_fallback,
         providers=s.get_providers(), fallback=s._enable_fallback,
         options={k: v for k, v in opts.items() if k in keep},
         free_gib=round((cuda_free_memory(0) or 0) / 2**30, 1), auto_tile=up.tile_for(1500, 2000))


def cmd_psnr_dirs(a, b, minimum):
    """PSNR (RGB over [0,1]) between same-named images of two folders."""
    rows = []
    for fa in sorted(Path(a).iterdir()):
        fb = Path(b) / fa.name
        x = load01(fa)
        y = load01(fb) if fb.exists() else None
        rows.append((fa.name, psnr(x, y) if y is not None and y.shape == x.shape else None))
    bad = [n for n, v in rows if v is None]
    vals = [v for _, v in rows if v is not None]
    worst = min(vals) if vals else None
    emit(ok=bool(vals) and not bad and worst >= float(minimum), images=len(rows), missing=bad,
         min_db=worst)


def cmd_fp16_models(shipped, models_dir):
    """SRTOOL_MODELS folder: compact-x4/{model.onnx, model.fp16.onnx} (srtool's own to_fp16)."""
    import shutil, onnx
    from srtool.export.quantize import to_fp16
    d = Path(models_dir) / "compact-x4"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped, d / "model.onnx")
    onnx.save(to_fp16(onnx.load(shipped)), str(d / "model.fp16.onnx"))
    emit(fp16=str(d / "model.fp16.onnx"))


def cmd_set5_fp16(models_dir, set5):
    """Set5 on CUDA: the fp16 variant against fp32, raw float outputs (NaN/Inf, PSNR)."""
    os.environ["SRTOOL_MODELS"] = models_dir
    from srtool.infer import load_upscaler
    f32 = load_upscaler("compact-x4", device="cuda")
    f16 = load_upscaler("compact-x4", device="cuda", fp16=True)
    worst, nonfinite = math.inf, 0
    for p in sorted(Path(set5).glob("*.png")):
        x = np.ascontiguousarray(load01(p).transpose(2, 0, 1))[None]
        a, b = f32.model.run(x), f16.model.run(x)
        nonfinite += int((~np.isfinite(b)).sum())
        worst = min(worst, psnr(np.clip(a, 0, 1), np.clip(np.nan_to_num(b), 0, 1)))
    emit(ok=nonfinite == 0 and worst >= 40 and f16.model.path.name == "model.fp16.onnx",
         file=f16.model.path.name, nonfinite=nonfinite, min_psnr_db=round(worst, 2))


def cmd_rrdb(out_path):
    """A small RRDBNet x4 (2 blocks, 64 features: ESRGAN's full-width HR layers)."""
    import torch
    from srtool.export import export_onnx
    from srtool.models import build
    torch.manual_seed(0)
    rep = export_onnx(build("rrdbnet", scale=4, blocks=2).eval(), out_path, write_card=False)
    emit(path=str(rep.out_path), peak=rep.metadata.get("srtool.peak_activation_per_input_pixel"))


def cmd_bigtensor(model, side):
    """--tile 0 on a SIDE x SIDE image whose whole-image tensors pass 2^31 values."""
    from srtool.infer import load_upscaler
    from srtool.infer.upscaler import tensor_values_per_pixel
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("srtool").addHandler(handler)
    side = int(side)
    x = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    x = (x + np.roll(x, 1, 0) + np.roll(x, 1, 1)) / 3  # a little structure
    whole = load_upscaler(model, device="cuda", tile=0)
    values = side * side * tensor_values_per_pixel(whole.info)
    out = whole.upscale(x)
    warned = [r.getMessage() for r in records if "2^31" in r.getMessage()]
    ref = load_upscaler(model, device="cuda", tile=512, batch=1).upscale(x)
    db = psnr(out, ref)
    emit(ok=bool(np.isfinite(out).all()) and db >= 40 and len(warned) == 1,
         whole_image_values=f"{values:.3g}", over_2_31=values >= 2**31, warnings=warned,
         psnr_vs_tile512=round(db, 2))


def cmd_hog(leave_gib, flag):
    """Hold all but LEAVE_GIB of GPU memory until killed."""
    import torch
    free, _ = torch.cuda.mem_get_info(0)
    hold = torch.empty(max(free - int(float(leave_gib) * 2**30), 0), dtype=torch.uint8, device="cuda")
    Path(flag).write_text(str(hold.numel()))
    time.sleep(900)


def cmd_run_ok(run_dir):
    """A finished run: finite last losses and a checkpoint."""
    rows = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    last = ([r for r in rows if "loss_g" in r] or [{}])[-1]
    ok = bool(last) and all(math.isfinite(v) for k, v in last.items() if k.startswith("loss_"))
    ok = ok and any((Path(run_dir) / "checkpoints").glob("*.safetensors"))
    emit(ok=ok, step=last.get("step"), loss_g=last.get("loss_g"), patches_s=last.get("patches_s"))


if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
PYEOF

# ---------------------------------------------------------------------------- doctor
if ready doctor; then
  if run doctor 180 "${SRT[@]}" doctor --device cuda; then
    pass "srtool doctor --device cuda" "$(grep -m1 -iE 'GPU|free' "$ACC/log/doctor.out" | tr -s ' ' | cut -c1-200)"
  else
    fail "srtool doctor --device cuda" "$(grep -iE 'problem|fix|does not|missing' "$ACC/log/doctor.out" | head -n 3 | tr -s ' ' | tr '\n' ' ' | cut -c1-300)"
  fi
fi

# ---------------------------------------------------------------------------- CUDA session
CUDA_OK=0
if run session 180 "$VPY" "$H" session "$SHIPPED"; then
  CUDA_OK=1
  wanted session && pass "CUDA session, no CPU fallback" "$(last_out session)"
else
  wanted session && fail "CUDA session, no CPU fallback" "$(last_out session) $(tail_err session)"
fi
cuda_ready() {  # NAME: selected, time left, and a CUDA session works
  ready "$1" || return 1
  [ "$CUDA_OK" = 1 ] || { skip "$1" "no CUDA session"; return 1; }
}
SET5=${SHARED:+$SHARED/data/Set5}
T91=${SHARED:+$SHARED/data/T91}

# ---------------------------------------------------------------------------- CUDA vs CPU
if cuda_ready parity; then
  if [ -z "$SET5" ] || [ ! -d "$SET5" ]; then skip "parity" "no Set5 under --shared"
  elif run up-cuda 300 "${SRT[@]}" upscale "$SET5" "$ACC/up/cuda" --device cuda \
    && run up-cpu 600 "${SRT[@]}" upscale "$SET5" "$ACC/up/cpu" --device cpu; then
    run psnr-cuda-cpu 120 "$VPY" "$H" psnr_dirs "$ACC/up/cuda" "$ACC/up/cpu" 45 \
      && pass "Set5 CUDA vs CPU (fp32, >= 45 dB)" "$(last_out psnr-cuda-cpu)" \
      || fail "Set5 CUDA vs CPU (fp32, >= 45 dB)" "$(last_out psnr-cuda-cpu)"
  else fail "Set5 upscale on CUDA and CPU" "$(tail_err up-cuda) $(tail_err up-cpu)"; fi
fi

# ---------------------------------------------------------------------------- fp16
if cuda_ready fp16; then
  if [ -z "$SET5" ] || [ ! -d "$SET5" ] || ! "$VPY" -c 'import onnx' 2>/dev/null; then
    skip "fp16" "needs the onnx package and Set5"
  elif run fp16-models 180 "$VPY" "$H" fp16_models "$SHIPPED" "$ACC/models"; then
    run set5-fp16 180 "$VPY" "$H" set5_fp16 "$ACC/models" "$SET5" \
      && pass "Set5 fp16 on CUDA: finite, >= 40 dB vs fp32" "$(last_out set5-fp16)" \
      || fail "Set5 fp16 on CUDA" "$(last_out set5-fp16) $(tail_err set5-fp16)"
    if SRTOOL_MODELS=$ACC/models run up-fp16 300 "${SRT[@]}" upscale "$SET5" "$ACC/up/fp16" \
         --model "$ACC/models/compact-x4/model.onnx" --device cuda --fp16; then
      if grep -qiE "no fp16 variant|running it in fp32|fp32 model" "$ACC/log/up-fp16.out" "$ACC/log/up-fp16.err"; then
        fail "--fp16 --model PATH.onnx uses PATH.fp16.onnx" "srtool ran fp32"
      else pass "--fp16 --model PATH.onnx uses PATH.fp16.onnx"; fi
    else fail "upscale --fp16 on CUDA" "$(tail_err up-fp16)"; fi
  else fail "fp16 variant of the shipped model" "$(tail_err fp16-models)"; fi
fi

# ---------------------------------------------------------------------------- tensors > 2^31
RRDB=$ACC/models/rrdb/model.onnx
if { wanted bigtensor || wanted oom; } && [ "$CUDA_OK" = 1 ] && [ "$HAS_TORCH" = 1 ]; then
  run rrdb 300 "$VPY" "$H" rrdb "$RRDB" || fail "export RRDBNet x4 (2 blocks)" "$(tail_err rrdb)"
fi
if cuda_ready bigtensor; then
  if [ ! -f "$RRDB" ]; then skip "bigtensor" "no RRDBNet export (needs torch)"
  # RRDBNet x4 peaks at ~1024 values per input pixel: 1536^2 of them is 2.4e9 > 2^31
  elif run bigtensor 420 "$VPY" "$H" bigtensor "$RRDB" 1536; then
    pass "--tile 0 past 2^31 values is cut, output finite and right" "$(last_out bigtensor)"
  else fail "--tile 0 past 2^31 values" "$(last_out bigtensor) $(tail_err bigtensor)"; fi
fi

# ---------------------------------------------------------------------------- out of memory
if cuda_ready oom; then
  if [ ! -f "$RRDB" ] || [ "$HAS_TORCH" != 1 ]; then skip "oom" "needs torch and the RRDBNet export"
  else
    "$VPY" -c 'from PIL import Image; import numpy as np; Image.fromarray((np.random.default_rng(0).random((1500, 2000, 3)) * 255).astype("uint8")).save("'"$ACC/in/big.png"'")'
    rm -f "$ACC/hog.flag"
    "$VPY" "$H" hog 3 "$ACC/hog.flag" >"$ACC/log/hog.out" 2>&1 &
    HOG=$!
    for _ in $(seq 120); do [ -f "$ACC/hog.flag" ] && break; sleep 0.5; done
    run oom 420 "${SRT[@]}" upscale "$ACC/in/big.png" "$ACC/up/big_oom.png" --model "$RRDB" \
      --device cuda --tile 1024 --batch 4 --verbose
    rc=$?
    kill "$HOG" 2>/dev/null; wait "$HOG" 2>/dev/null
    if [ $rc = 0 ] && grep -q "out of memory: retrying" "$ACC/log/oom.err"; then
      pass "out-of-memory retry" "$(grep -o 'retrying with [0-9a-z ]*' "$ACC/log/oom.err" | tr '\n' ';')"
    elif [ $rc = 0 ]; then note "out-of-memory retry" "no out-of-memory happened with 3 GiB left"
    else fail "out-of-memory retry" "rc=$rc $(grep -iE 'error|memory|cudnn|cublas' "$ACC/log/oom.err" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"; fi
  fi
fi

# ---------------------------------------------------------------------------- pytest -m gpu
if ready pytest; then
  if ! "$VPY" -c 'import pytest' 2>/dev/null; then skip "pytest -m gpu" "pytest is not installed"
  else
    run pytest 600 "$VPY" -m pytest -q -rs -m gpu -p no:cacheprovider tests/
    rc=$?
    line=$(grep -E '[0-9]+ (passed|failed|skipped)' "$ACC/log/pytest.out" | tail -n 1)
    if [ $rc = 0 ] && echo "$line" | grep -q passed && ! echo "$line" | grep -q skipped; then
      pass "pytest -m gpu" "$line"
    else fail "pytest -m gpu" "rc=$rc: ${line:-$(tail_err pytest)}"; fi
  fi
fi

# ---------------------------------------------------------------------------- training
if ready train; then
  if [ "$HAS_TORCH" != 1 ] || ! "$VPY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    skip "train" "no CUDA torch"
  elif [ -z "$T91" ] || [ ! -d "$T91" ]; then skip "train" "no T91 under --shared"
  else
    for amp in auto fp16; do
      if run "train-$amp" 300 "${SRT[@]}" train compact_x4 --data "$T91" --out "$ACC/runs/$amp" \
           --steps 100 --device cuda --set "train.amp=$amp" --set train.log_every=25 \
           --set train.val_every=100 --set train.save_every=100 --set data.val_count=2 \
         && run "runok-$amp" 60 "$VPY" "$H" run_ok "$ACC/runs/$amp"; then
        pass "train compact_x4 100 steps on CUDA, amp=$amp" "$(last_out "runok-$amp")"
      else fail "train compact_x4 on CUDA, amp=$amp" "$(tail_err "train-$amp") $(last_out "runok-$amp")"; fi
    done
  fi
fi

# ---------------------------------------------------------------------------- summary
P=$(grep -c '^PASS' "$SUMMARY"); F=$(grep -c '^FAIL' "$SUMMARY"); S=$(grep -c '^SKIP' "$SUMMARY")
say "----"
say "$P passed, $F failed, $S skipped in $(elapsed)s; logs in $ACC/log"
[ "$F" = 0 ]
