# compact-x3, as trained on a 2-core CPU: started from the shipped x4 model's weights (every
# layer but the x4-specific upsampler; see `srtool train --init-from`), short schedule.
D=../shared/data
srtool train compact_x3 --data $D/T91 --data $D/BSD200 --data $D/BSDS500_test \
    --data $D/DIV2K_test_LRx4 --val $D/Set5 --out runs/compact_x3 --steps 5000 \
    --init-from training/compact-x4/run/checkpoints/best.safetensors \
    --set optim.warmup_steps=200 --set train.val_every=500 --set train.save_every=500
# export, evaluate and measure (the run folder is kept in training/compact-x3/run)
srtool export training/compact-x3/run -o exports/compact-x3/model.onnx
srtool evaluate --bench Set5 --bench Set14 --bench BSD100 --model compact-x3 --model bicubic \
    --scale 3 --data-root $D --markdown training/compact-x3/evaluate.md
python benchmarks/upscale_bench.py --model exports/compact-x3/model.onnx --count 10 \
    --json training/compact-x3/bench.json
