# efficient-x3: from the x3 run's best checkpoint to exports/efficient-x3 (model, card numbers),
# from the repository root with srtool importable. CK is the checkpoint shipped (its file is kept
# in the run folder because later sittings overwrite best.safetensors).
set -e
export OMP_NUM_THREADS=2
D=../shared/data
CK=${CK:?the checkpoint to ship, e.g. training/efficient-x3/run/checkpoints/shipped_step_0008000.safetensors}
srtool export "$CK" -o exports/efficient-x3/model.onnx
mv exports/efficient-x3/model.md training/efficient-x3/export.md
# quality: the three benchmarks, against the model it would replace
srtool evaluate --bench Set5 --bench Set14 --bench BSD100 --model compact-x3 \
    --model efficient-x3 --scale 3 --data-root $D \
    --markdown training/efficient-x3/evaluate.md
# speed: the srtool upscale pipeline (card), then every shipped model in one run (README plot)
python benchmarks/upscale_bench.py --model exports/efficient-x3/model.onnx --count 10 \
    --json training/efficient-x3/bench.json
python benchmarks/quality_speed.py --data-root $D
