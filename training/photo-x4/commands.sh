# photo-x4 (not shipped): two short ESRGAN-objective fine-tunes of compact-x4 on a 2-core CPU.
# Offline perceptual loss: the VGG19 layers of ../shared/weights (conv1_1 ... conv3_1).
# Both recipes were run from copies under runs/ (variant a then named photo_x4, not photo_x4_a);
# the files here are those recipes.
D=../shared/data
W=../shared/weights/vgg19_conv1_1-conv3_1_oxford.safetensors
# a) ESRGAN's weights (perceptual 1 : RaGAN 5e-3 : L1 1e-2, the perceptual term rescaled for
#    the 0-255 VGG input): stopped with Ctrl-C at step 839 of 3000 (grid artifacts at 250-839)
srtool train training/photo-x4/recipe_a.toml --data $D/T91 --data $D/BSD200 \
    --data $D/BSDS500_test --data $D/DIV2K_test_LRx4 --val $D/Set5 --out runs/photo_x4 \
    --init-from training/compact-x4/run/checkpoints/best.safetensors --vgg-weights $W
# b) L1 at full weight, the perceptual term 4x lighter, the same RaGAN term
srtool train training/photo-x4/recipe_b.toml --data $D/T91 --data $D/BSD200 \
    --data $D/BSDS500_test --data $D/DIV2K_test_LRx4 --val $D/Set5 --out runs/photo_x4_b \
    --init-from training/compact-x4/run/checkpoints/best.safetensors --vgg-weights $W
# scores and side-by-side crops (the checkpoints copied under names that say what they are)
cp runs/photo_x4/checkpoints/step_0000839.safetensors /tmp/photo-x4-a.safetensors
cp runs/photo_x4_b/checkpoints/step_0001500.safetensors /tmp/photo-x4-b.safetensors
srtool evaluate --bench Set5 --bench Set14 --bench BSD100 --scale 4 --data-root $D \
    --model compact-x4 --model /tmp/photo-x4-a.safetensors --model /tmp/photo-x4-b.safetensors \
    --markdown training/photo-x4/evaluate.md --save-images /tmp/photo-x4-sheets
S=/tmp/photo-x4-sheets
python training/photo-x4/stack.py training/photo-x4/crops.png \
    $S/Set14/x4/compare/baboon.png $S/Set14/x4/compare/comic.png \
    $S/BSD100/x4/compare/img_008.png
