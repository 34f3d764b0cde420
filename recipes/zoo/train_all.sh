#!/usr/bin/env bash
# Train the five zoo models one after the other on the real Fashion-MNIST and export them into zoo/.
# Usage: bash recipes/zoo/train_all.sh [name ...]      (default: all six, resnet.fmnist ~1.5 h; logs in runs/zoo_logs/<name>.log)
# One intra-op thread: on a shared 2-core machine two threads per process spin against each other and run
# ~10x slower (measured: 37 ms vs 428 ms per MLP step under load).
# An export writes the measured metrics into zoo/<name>/card.json; paste the printed pin line into PINS in
# lit_deep/zoo/registry.py, then run `lit-deep zoo cards`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(mlp_selu.fmnist_a cnn.fmnist mlp.fmnist mlp_mc.fmnist autoencoder.fmnist resnet.fmnist)
mkdir -p runs/zoo_logs
for name in "${names[@]}"; do
  rm -rf "runs/zoo/$name"
  lit-deep fit --config "recipes/zoo/$name.yaml" > "runs/zoo_logs/$name.log" 2>&1
  lit-deep zoo export "$name" --ckpt "runs/zoo/$name/checkpoints/last.ckpt" | tee -a "runs/zoo_logs/$name.log"
done
