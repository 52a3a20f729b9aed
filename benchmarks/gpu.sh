#!/usr/bin/env bash
# The GPU benchmark, ready to run on a CUDA machine (no network needed: random weights).
# Stable Diffusion v1.4's full architecture, 512x512, float16, 25 steps, scaled-dot-product
# attention; once as it is, once channels-last, once channels-last + torch.compile.
# Writes benchmarks/gpu*.json and .md; commit them with the device's name and date (in the files).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
"$PYTHON" -m blending.bench --device cuda --name gpu
"$PYTHON" -m blending.bench --device cuda --channels-last --name gpu-channels-last
"$PYTHON" -m blending.bench --device cuda --channels-last --compile --name gpu-compile
