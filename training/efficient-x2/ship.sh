# efficient-x2: from the x2 run's checkpoint to exports/efficient-x2 (training/ship.sh), e.g.
#   CK=training/efficient-x2/run/checkpoints/shipped_step_0016000.safetensors \
#       bash training/efficient-x2/ship.sh
NAME=efficient-x2 SCALE=2 BASELINE=compact-x2 bash training/ship.sh
