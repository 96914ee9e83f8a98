# photo-x4: from the stage-2 checkpoint to exports/photo-x4 (model, card numbers, crops), from the
# repository root with srtool importable. CK is the checkpoint shipped (step 500; see README.md, "Shipped"): its file is kept in the run folder.
set -e
export OMP_NUM_THREADS=2
D=../shared/data
L=../shared/weights/lpips_alex_v0.1.safetensors
CK=${CK:-training/photo-x4/gan/checkpoints/shipped_step_0000500.safetensors}
cp "$CK" /tmp/photo-x4.safetensors
srtool export /tmp/photo-x4.safetensors -o exports/photo-x4/model.onnx
mv exports/photo-x4/model.md training/photo-x4/export.md
# the shipping rule: BSD100 x4, both protocols, against bicubic, compact-x4 and animevideov3
for deg in bicubic realistic; do
  srtool evaluate --bench BSD100 --data-root $D --degradation $deg --grid --lpips-weights $L \
      --model compact-x4 --model ../shared/weights/realesr-animevideov3_x4.pth \
      --model photo-x4 --markdown training/photo-x4/evaluate_$deg.md
done
python training/photo-x4/crops.py --model exports/photo-x4/model.onnx --data-root $D \
    --out exports/photo-x4/crops.png
