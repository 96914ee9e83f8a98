# efficient-x4: from the L1 run's checkpoint to exports/efficient-x4 (training/ship.sh). CK is the
# checkpoint shipped (the best Set5 validation of training/efficient-x4/run, step 31,000; its file
# is kept in the run folder because later sittings overwrite best.safetensors). The int8 variant
# comes from the quantisation-aware run QAT (commands.sh step 13: fuse, blocks.0.convs.0 and
# upsampler.0 kept in float), is measured against it and written only within 0.05 dB on Set5: it
# loses 0.031 dB and ships as model.int8.onnx.
D=../shared/data
QAT=${QAT:-training/efficient-x4/qat-int8/checkpoints/best.safetensors}
CK=${CK:-training/efficient-x4/run/checkpoints/shipped_step_0031000.safetensors} \
    NAME=efficient-x4 SCALE=4 BASELINE=compact-x4 \
    EXPORT_ARGS="--int8 $D/T91 --int8-eval $D/Set5 --int8-from $QAT" bash training/ship.sh
