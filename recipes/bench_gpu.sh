#!/usr/bin/env bash
# The GPU speed measurement, one command on a GPU machine (about 8 minutes on one H200):
#   bash recipes/bench_gpu.sh [LOG_DIR]
# It prints the bench table (img/s, step time, peak memory, GFLOP/img, MFU, the reference's figures beside) at the
# presets' global batch in fp32 (with a profile of each row's most expensive operators), bf16 and tf32, the precision
# protocol's PSNR on the embedded photos, bf16 with torch.compile (plain, then replayed as CUDA graphs) for the two
# headline presets, and the memory/speed trade of micro-batches. Each part has its own time limit and a failed part
# does not stop the others; every part's output is also written to LOG_DIR (default: $OUT where set, else
# runs/bench_gpu).
# On an offline machine without tyro / datasets / soundfile, put their wheels in .whl/ first
# (recipes/fetch_wheels.sh does it on a machine with network access; .whl/backup/ holds pyarrow and fsspec wheels,
# installed only when the machine's own are too old for datasets).
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir="${1:-${OUT:-runs/bench_gpu}}"
mkdir -p "$log_dir"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
install_wheels() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ginr-site "$@"
}
if ! python3 -c "import tyro, datasets, soundfile" 2>/dev/null; then
  install_wheels .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/ginr-site"
  if ! python3 -c "import datasets" 2>/dev/null && [ -d .whl/backup ]; then
    install_wheels .whl/backup/*.whl
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,power.limit --format=csv,noheader || true
python3 -c "import torch, tyro, datasets; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'| tyro', tyro.__version__, '| datasets', datasets.__version__)" || exit 1

part() {  # part NAME SECONDS COMMAND...: run one part under its own limit, log it, go on if it fails
  local name="$1" seconds="$2"
  shift 2
  echo "=== $name"
  local tick=$SECONDS
  timeout "$seconds" "$@" 2>&1 | tee "$log_dir/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - tick)) s"
}
part fp32 140 python3 recipes/bench.py --precision fp32 --warmup 3 --steps 10 --profile 12
part bf16 90 python3 recipes/bench.py --precision bf16 --warmup 3 --steps 10
part tf32 80 python3 recipes/bench.py --precision tf32 --warmup 3 --steps 10
part precision 120 python3 recipes/compare_precision.py --precisions fp32 tf32 bf16 --steps 120
part compile 80 python3 recipes/bench.py --precision bf16 --compile --warmup 3 --steps 10 \
  --only ipc-meta:imagenette178 ipc-transinr:celeba178
part graphs 80 python3 recipes/bench.py --precision bf16 --compile --compile-mode reduce-overhead --warmup 3 \
  --steps 10 --only ipc-meta:imagenette178 ipc-transinr:celeba178      # compiled and replayed as CUDA graphs
part accumulation 45 python3 recipes/bench.py --precision bf16 --accumulation 4 --warmup 2 --steps 5 \
  --only ipc-meta:imagenette178 ipc-meta:ffhq256
for name in fp32 bf16 tf32 compile graphs accumulation; do  # the tables again, together at the end
  echo "--- $name"
  awk '/^summary:/{table=1} table' "$log_dir/$name.log" 2>/dev/null
done
tail -n 6 "$log_dir/precision.log" 2>/dev/null
