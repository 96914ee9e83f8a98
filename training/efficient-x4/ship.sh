# efficient-x4: from the L1 run's checkpoint to exports/efficient-x4 (training/ship.sh). CK is the
# checkpoint shipped (the best Set5 validation of training/efficient-x4/run, step 31,000; its file
# is kept in the run folder because later sittings overwrite best.safetensors). The int8 variant
# from the quantisation-aware run QAT (commands.sh step 9; its checkpoints are not kept, run it
# first) is measured against it and written only within 0.05 dB on Set5: it lost 0.075 dB and
# was not written.
D=../shared/data
QAT=${QAT:-training/efficient-x4/qat/checkpoints/best.safetensors}
CK=${CK:-training/efficient-x4/run/checkpoints/shipped_step_0031000.safetensors} \
    NAME=efficient-x4 SCALE=4 BASELINE=compact-x4 \
    EXPORT_ARGS="--int8 $D/T91 --int8-eval $D/Set5 --int8-from $QAT" bash training/ship.sh
