#!/usr/bin/env bash
# Fetch, on a machine with network access, the wheels recipes/bench_gpu.sh installs on an offline GPU machine whose
# Python (3.12 by default) has torch, accelerate, safetensors, einops, huggingface_hub and tensorboard but not tyro,
# datasets or soundfile:  bash recipes/fetch_wheels.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.12}"
python3 -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl \
  tyro docstring-parser typeguard datasets dill multiprocess soundfile cffi pycparser
# pyarrow and fsspec at the versions datasets needs, installed by bench_gpu.sh only when the machine's own are too old
python3 -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl/backup \
  "pyarrow>=24" "fsspec<=2026.9.0"
