# photo-x4, "Fourth finding" of README.md: BSD100 x4 under both protocols, with LPIPS and the
# grid check, for the baselines of the shipping rule and for the grid-free stage 1 and a
# 150-step stage-2 check (gridfree_trials.sh), copied to names that say what they are.
set -e
export OMP_NUM_THREADS=1
D=../shared/data
L=../shared/weights/lpips_alex_v0.1.safetensors
cp training/photo-x4/stage1-gridfree/checkpoints/best.safetensors /tmp/stage1-gridfree.safetensors
cp /tmp/trials/phase0/checkpoints/best.safetensors /tmp/gan-trial150.safetensors
for deg in bicubic realistic; do
  srtool evaluate --bench BSD100 --data-root $D --degradation $deg --grid --lpips-weights $L \
      --model compact-x4 --model ../shared/weights/realesr-animevideov3_x4.pth \
      --markdown training/photo-x4/baselines_$deg.md
  srtool evaluate --bench BSD100 --data-root $D --degradation $deg --grid --lpips-weights $L \
      --model /tmp/stage1-gridfree.safetensors --model /tmp/gan-trial150.safetensors \
      --markdown training/photo-x4/stage1_$deg.md
done
