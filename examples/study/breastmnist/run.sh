#!/bin/sh
# BreastMNIST (28 px ultrasound, train 546 / test 156): SLDD(1/class) vs DD(1/class) vs ConvNet trained
# normally on all training images, 3 seeds; 300 outer iterations, normal training 400 Adam steps.
sldp study --kind table1 --data "${DATA:-../shared/data}/breastmnist_28.npz" \
  --seeds 0,1,2 -M 1 --methods sldd,dd --normal all \
  --iterations 300 --train-steps 400 \
  --jobs 3 --threads 1 --device cpu --out runs/study-breastmnist
