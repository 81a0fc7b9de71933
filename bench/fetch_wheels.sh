#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels bench/gpu_check.sh installs on the GPU machine:
# what `pip install -e .` needs there beyond its image (the device tool's KINDS.md lists the
# image's packages: torch, torchvision, lightning, torchmetrics, timm, pillow, numpy, pyyaml and
# huggingface-hub are there), for its Python 3.12 on x86_64 Linux. All four are pure Python.
# Not carried: wandb (imported only when a W&B logger is configured; the check configures none).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  segmentation-models-pytorch==0.6.0
  jsonargparse==4.53.0
  docstring-parser==0.18.0   # jsonargparse[signatures], which LightningCLI requires
  typeshed-client==2.15.0    # likewise
)
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl && du -sh .whl
