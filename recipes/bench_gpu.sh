#!/usr/bin/env bash
# The GPU speed measurement, one command on a GPU machine (about 8 minutes on one H200):
#   bash recipes/bench_gpu.sh
# It prints the bench table (img/s, step time, peak memory, GFLOP/img, MFU, the reference's figures beside) at the
# presets' global batch in fp32, tf32 and bf16, then bf16 with torch.compile for the two headline presets, the
# memory/speed trade of micro-batches, then the precision protocol's PSNR on the embedded photos. On an offline machine without tyro / datasets / soundfile, put
# their wheels in .whl/ first (recipes/fetch_wheels.sh does it on a machine with network access).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c "import tyro, datasets, soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ginr-site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/ginr-site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
for precision in fp32 tf32 bf16; do
  python3 recipes/bench.py --precision "$precision" --warmup 3 --steps 10
done
python3 recipes/bench.py --precision bf16 --compile --warmup 3 --steps 10 \
  --only ipc-meta:imagenette178 ipc-transinr:celeba178
python3 recipes/bench.py --precision bf16 --accumulation 4 --warmup 2 --steps 5 \
  --only ipc-meta:imagenette178 ipc-meta:ffhq256          # the memory/speed trade of micro-batches
python3 recipes/compare_precision.py --precisions fp32 tf32 bf16 --steps 120
