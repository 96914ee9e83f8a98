# efficient-x3: from the x3 run's checkpoint to exports/efficient-x3 (training/ship.sh), e.g.
#   CK=training/efficient-x3/run/checkpoints/shipped_step_0008000.safetensors \
#       bash training/efficient-x3/ship.sh
NAME=efficient-x3 SCALE=3 BASELINE=compact-x3 bash training/ship.sh
