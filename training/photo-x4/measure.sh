# photo-x4 plan: the 30-step timing runs and the 20-step stage-2 variants of README.md ("Cost on
# this CPU", "First finding"), one thread, run from the repository root into /tmp (not the
# repository). Usage: bash training/photo-x4/measure.sh
set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export SRTOOL_LPIPS_WEIGHTS=../shared/weights/lpips_alex_v0.1.safetensors
D=../shared/data
VGG=../shared/weights/vgg19_imagenet_features_conv5_4.safetensors
DATA="--data $D/T91 --data $D/BSD200 --data $D/BSDS500_test --data $D/DIV2K_test_LRx4"
COMMON="$DATA --val $D/Set14 --device cpu --set train.log_every=10 --quiet"
uptime
# stage 1: 30 steps from the efficient-x4 checkpoint
srtool train training/recipes/photo_x4_stage1.toml $COMMON --steps 30 --out /tmp/pp/s1 \
    --init-from training/efficient-x4/run/checkpoints/best.safetensors
# stage 2: 30 steps from that, then 20-step variants (val_grid in each metrics.jsonl)
G="srtool train training/recipes/photo_x4_gan.toml $COMMON --vgg-weights $VGG"
G="$G --init-from /tmp/pp/s1/checkpoints/best.safetensors"
$G --steps 30 --out /tmp/pp/gan
NOADV="--set loss.adversarial=none --set loss.adversarial_weight=0"
$G --steps 20 --out /tmp/pp/percep $NOADV
$G --steps 20 --out /tmp/pp/adv --set loss.perceptual_weight=0
$G --steps 20 --out /tmp/pp/l1only $NOADV --set loss.perceptual_weight=0
$G --steps 20 --out /tmp/pp/pfreeze $NOADV --freeze 'upsampler.*'
# (the "VGG input randomly shifted" row used a trial option of PerceptualLoss, not kept)
uptime
for run in s1 gan percep adv l1only pfreeze; do
  echo "$run: $(tail -1 /tmp/pp/$run/metrics.jsonl)"
done
