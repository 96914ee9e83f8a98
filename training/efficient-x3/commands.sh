# efficient-x3 (arch span, 48 features x 4 blocks x 2 re-parameterisable convs at x3, recipe
# efficient_x3): started from the efficient-x4 L1 run's step-31000 weights (everything but the
# pixel-shuffle tail, which starts fresh), on a 2-core "Intel(R) Xeon(R) Processor" machine, one
# thread, the other core busy with efficient-x4 work. Run from the repository root with srtool
# importable.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
D=../shared/data
# 1) sitting 1
nohup setsid python -m srtool train training/recipes/efficient_x3.toml \
    --init-from training/efficient-x4/run/checkpoints/best.safetensors \
    --data $D/T91 --data $D/BSD200 --data $D/BSDS500_test --data $D/DIV2K_test_LRx4 \
    --val $D/Set5 --out training/efficient-x3/run > runs/efficient_x3.log 2>&1 &
# to continue it after a stop (kill -INT PID):
#   nohup setsid python -m srtool train --resume --out training/efficient-x3/run \
#       >> runs/efficient_x3.log 2>&1 &
#    sitting 1 ended with SIGINT after step 3467 (one thread; best Set5 validation 33.60 dB at
#    step 3000) and was resumed on two threads (the other process had stopped):
OMP_NUM_THREADS=2 nohup setsid python -m srtool train --resume --out training/efficient-x3/run \
    >> runs/efficient_x3.log 2>&1 &
# 2) that ended with SIGINT after step 8029 of 32000; best Set5 validation 33.76 dB at step 8000
#    (7000: 33.746, 6000: 33.728, 5000: 33.712, 4000: 33.68). Its checkpoint is shipped (kept
#    under a name the run does not prune, checkpoints/shipped_step_0008000.safetensors):
CK=training/efficient-x3/run/checkpoints/shipped_step_0008000.safetensors bash training/efficient-x3/ship.sh
python training/make_card.py efficient-x3 --eval training/efficient-x3/evaluate.md \
    --bench training/efficient-x3/bench.json --status "$(sed -n 3p exports/efficient-x3/card.md)"
# 3) resumed at step 8029 on one thread and stopped with SIGINT after step 8159 (the cores went to
#    efficient-x4 and efficient-x2); continue it with the same resume command.
# 4) resumed at step 8159 on two threads (about 1.6 steps/s alone) and stopped with SIGINT after
#    step 10192; Set5 validation 9000: 33.766, 10000: 33.770 (best), against 33.759 at the
#    shipped step 8000: not re-shipped for +0.01 dB. Continue with:
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 nohup setsid python -m srtool train --resume \
    --out training/efficient-x3/run >> runs/efficient_x3.log 2>&1 &
# 5) that resumed at step 10192 (two threads) and was stopped with SIGINT after step 11643 of
#    32000 (Set5 validation 11000: 33.785); the cosine tail was then brought forward, as for
#    efficient-x4: the learning rate, a function of the step and the total, fell from 3.7e-4 to
#    1.6e-4 and decays to 1e-6 at step 19000 (two threads, about 1.6 steps/s alone). The total
#    moved twice first: --steps 18000 ran steps 11644-11708, --steps 20000 steps 11709-11984
#    (the cores were shared with int8 experiments, so 19000 is what the sitting could finish):
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 nohup setsid python -m srtool train --resume --steps 19000 \
    --out training/efficient-x3/run >> runs/efficient_x3.log 2>&1 &
#    Stopped with SIGINT after step 18017 of 19000 (the last 1000 steps at a learning rate near
#    1e-6). Set5 validation: 12000 33.787, 13000 33.790, 14000 33.801, 15000 33.800, 16000 33.802
#    (best), 17000 33.798, 18000 33.797. `srtool evaluate` of the best checkpoint against the
#    shipped step-8000 model: 33.80 / 29.83 / 28.88 against 33.76 / 29.81 / 28.86 (Set5 / Set14 /
#    BSD100), better on all three, so it ships:
cp training/efficient-x3/run/checkpoints/best.safetensors \
    training/efficient-x3/run/checkpoints/shipped_step_0016000.safetensors
CK=training/efficient-x3/run/checkpoints/shipped_step_0016000.safetensors \
    bash training/efficient-x3/ship.sh
python training/make_card.py efficient-x3 --eval training/efficient-x3/evaluate.md \
    --bench training/efficient-x3/bench.json --status "$(sed -n 3p exports/efficient-x3/card.md)"
# 6) int8 (exports/efficient-x3/model.int8.onnx, `srtool upscale --scale 3 --int8`): quantisation-
#    aware fine-tuning of the shipped step-16000 weights as at x4 (efficient-x4/commands.sh, step
#    13: the same three convolutions left in float), 500 steps on one thread (the other core on
#    efficient-x2's), step_* checkpoints deleted. Fake-int8 Set5 validation 125: 33.726, 250:
#    33.730, 375: 33.739, 500: 33.751 (best). A 1,000-step run of the same recipe did no better
#    (best 33.744 at step 375; 750: 33.742, 1000: 33.730), so the 500-step one ships.
OMP_NUM_THREADS=1 nohup setsid python -m srtool train training/recipes/efficient_x3_qat.toml \
    --init-from training/efficient-x3/run/checkpoints/shipped_step_0016000.safetensors \
    --data $D/T91 --data $D/BSD200 --data $D/BSDS500_test --data $D/DIV2K_test_LRx4 \
    --val $D/Set5 --out training/efficient-x3/qat-int8 > runs/efficient_x3_qat_int8.log 2>&1 &
#    The int8 file (the fp32 export of the same checkpoint is byte-for-byte the shipped weights;
#    the export's own card is training/efficient-x3/export_int8.md): Set5 -0.046 dB at 1.41x
#    (two threads, the other core busy)
srtool export training/efficient-x3/run/checkpoints/shipped_step_0016000.safetensors \
    -o /tmp/x3_int8/model.onnx --int8 $D/T91 --int8-eval $D/Set5 \
    --int8-from training/efficient-x3/qat-int8/checkpoints/best.safetensors
cp /tmp/x3_int8/model.int8.onnx exports/efficient-x3/model.int8.onnx
srtool evaluate --bench Set5 --bench Set14 --bench BSD100 --model efficient-x3 \
    --model exports/efficient-x3/model.int8.onnx --scale 3 --data-root $D \
    --markdown training/efficient-x3/evaluate_int8.md
