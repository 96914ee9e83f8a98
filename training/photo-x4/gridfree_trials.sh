# photo-x4, "Third finding" of README.md: the grid-free generator through stage 1 and 150-step
# stage-2 checks, one thread, from the repository root. Usage: bash training/photo-x4/gridfree_trials.sh
set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export SRTOOL_LPIPS_WEIGHTS=../shared/weights/lpips_alex_v0.1.safetensors
D=../shared/data
VGG=../shared/weights/vgg19_imagenet_features_conv5_4.safetensors
DATA="--data $D/T91 --data $D/BSD200 --data $D/BSDS500_test --data $D/DIV2K_test_LRx4"
# stage 1 with the filter, from the first stage-1 run's best (step 3,000, no filter); stopped
# with SIGINT after step 612 (validation every 500 steps)
srtool train training/recipes/photo_x4_stage1.toml $DATA --val $D/Set14 --device cpu \
    --init-from training/photo-x4/stage1/checkpoints/best.safetensors \
    --set train.val_every=500 --set train.save_every=500 --out training/photo-x4/stage1-gridfree
cp training/photo-x4/stage1-gridfree/checkpoints/best.safetensors /tmp/s1gf.safetensors
# stage 2 checks: the recipe (no phase term) and the same with the phase term of the second finding
G="srtool train training/recipes/photo_x4_gan.toml $DATA --val $D/Set14 --device cpu"
G="$G --set train.log_every=10 --set train.val_every=50 --quiet --vgg-weights $VGG"
G="$G --init-from /tmp/s1gf.safetensors --steps 150"
$G --out /tmp/trials/phase0
$G --out /tmp/trials/phase10 --set loss.phase_weight=10
grep val_grid /tmp/trials/phase0/metrics.jsonl /tmp/trials/phase10/metrics.jsonl
