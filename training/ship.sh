# A shipped PSNR model, from its training checkpoint to exports/NAME (model, card numbers), from
# the repository root with srtool importable:
#   CK=training/NAME/run/checkpoints/shipped_step_N.safetensors NAME=efficient-x3 SCALE=3 \
#       BASELINE=compact-x3 bash training/ship.sh
# CK is the checkpoint shipped (kept in the run folder under a name the run does not prune,
# because later sittings overwrite best.safetensors); BASELINE is the model it would replace;
# EXPORT_ARGS, optional, more `srtool export` options (e.g. the int8 ones).
set -e
export OMP_NUM_THREADS=2
D=../shared/data
: "${CK:?the checkpoint to ship}" "${NAME:?the model name}" "${SCALE:?its scale}"
: "${BASELINE:?the model it would replace}"
# shellcheck disable=SC2086  # EXPORT_ARGS is a list of options
srtool export "$CK" -o "exports/$NAME/model.onnx" ${EXPORT_ARGS:-}
mv "exports/$NAME/model.md" "training/$NAME/export.md"
# quality: the three benchmarks, against the model it would replace
srtool evaluate --bench Set5 --bench Set14 --bench BSD100 --model "$BASELINE" \
    --model "$NAME" --scale "$SCALE" --data-root $D \
    --markdown "training/$NAME/evaluate.md"
# speed: the srtool upscale pipeline (card), then every shipped model in one run (README plot)
python benchmarks/upscale_bench.py --model "exports/$NAME/model.onnx" --count 10 \
    --json "training/$NAME/bench.json"
python benchmarks/quality_speed.py --data-root $D
