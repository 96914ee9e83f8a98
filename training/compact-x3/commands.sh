# compact-x3, as trained on a 2-core CPU: started from the compact-x4 run's best checkpoint at
# step 22,000 (every layer but the x4-specific upsampler; see `srtool train --init-from`),
# with a short schedule.
D=../shared/data
# 1) steps 0-454, 2 threads, stopped with Ctrl-C (saves the state)
srtool train compact_x3 --data $D/T91 --data $D/BSD200 --data $D/BSDS500_test \
    --data $D/DIV2K_test_LRx4 --val $D/Set5 --out runs/compact_x3 --steps 8000 \
    --init-from training/compact-x3/init_compact_x4_step22000.safetensors \
    --set optim.warmup_steps=200 --set train.val_every=500 --set train.save_every=500
# 2) steps 454-584, one thread (1.35 it/s against 2.5 with two: not kept), stopped with Ctrl-C
OMP_NUM_THREADS=1 srtool train --resume --out runs/compact_x3
# 3) steps 584-8000, 2 threads
srtool train --resume --out runs/compact_x3
# export, evaluate and measure (the run folder is kept in training/compact-x3/run)
srtool export training/compact-x3/run -o exports/compact-x3/model.onnx
# the int8 variant was tried and rejected: -0.093 dB PSNR-Y on Set5 (more than the 0.05 dB
# allowed) for a 1.87x speed-up. Measured with (the int8 file is then not written):
srtool export training/compact-x3/run -o /tmp/compact-x3-int8/model.onnx \
    --int8 $D/T91 --int8-eval $D/Set5
srtool evaluate --bench Set5 --bench Set14 --bench BSD100 --model compact-x3 --model bicubic \
    --scale 3 --data-root $D --markdown training/compact-x3/evaluate.md
python benchmarks/upscale_bench.py --model exports/compact-x3/model.onnx --count 10 \
    --json training/compact-x3/bench.json
