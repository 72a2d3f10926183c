#!/usr/bin/env bash
# The GPU speed measurement, one command on a GPU machine (about 8 minutes on one H200):
#   bash recipes/bench_gpu.sh [LOG_DIR [PART ...]]     # PART: fp32 bf16 tf32 precision compile graphs
#                                                      #   accumulation (default: these seven) or profile
# It prints the bench table (img/s, step time, peak memory, GFLOP/img, MFU, the reference's figures beside) at the
# presets' global batch in fp32 (with a profile of each row's most expensive operators), bf16 and tf32, the precision
# protocol's PSNR trajectory on the embedded photos, bf16 with torch.compile (plain for the two headline presets,
# replayed as CUDA graphs for every preset issue 7 sets a target for), and the memory/speed trade of micro-batches.
# The profile part (not in the default run, about 2 minutes) lists the most expensive kernels of the compiled bf16
# step of the two transformer-bound presets. Each part has its own time limit and a failed part does not stop the
# others; every part's output is also written to LOG_DIR (default: $OUT where set, else runs/bench_gpu).
# On an offline machine without tyro / datasets / soundfile, put their wheels in .whl/ first
# (recipes/fetch_wheels.sh does it on a machine with network access; .whl/backup/ holds pyarrow and fsspec wheels,
# installed only when the machine's own are too old for datasets).
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir="${1:-${OUT:-runs/bench_gpu}}"
defaults="fp32 bf16 tf32 precision compile graphs accumulation"
known=" $defaults profile "
for name in "${@:2}"; do
  [[ "$known" == *" $name "* ]] || { echo "bench_gpu.sh: unknown part '$name'; choose from:$known"; exit 2; }
done
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
targets="ipc-meta:imagenette178 ipc-meta:ffhq256 ipc-transinr:celeba178 ipc-transinr:librispeech1s \
ipc-transinr:shapenet-cars"  # the rows issue 7 sets a target for
run_part() {  # one part of the measurement by name
  case "$1" in
    fp32) part fp32 130 python3 recipes/bench.py --precision fp32 --warmup 3 --steps 10 --profile 12 ;;
    bf16) part bf16 80 python3 recipes/bench.py --precision bf16 --warmup 3 --steps 10 ;;
    tf32) part tf32 60 python3 recipes/bench.py --precision tf32 --warmup 3 --steps 10 ;;
    precision) part precision 130 python3 recipes/compare_precision.py --precisions fp32 tf32 bf16 --steps 400 ;;
    compile) part compile 75 python3 recipes/bench.py --precision bf16 --compile --warmup 3 --steps 10 \
      --only ipc-meta:imagenette178 ipc-transinr:celeba178 ;;
    graphs) part graphs 170 python3 recipes/bench.py --precision bf16 --compile --compile-mode reduce-overhead \
      --warmup 3 --steps 10 --only $targets ;;  # compiled and replayed as CUDA graphs
    accumulation) part accumulation 40 python3 recipes/bench.py --precision bf16 --accumulation 4 --warmup 2 \
      --steps 5 --only ipc-meta:imagenette178 ipc-meta:ffhq256 ;;
    profile) part profile 150 python3 recipes/bench.py --precision bf16 --compile --warmup 3 --steps 5 --profile 25 \
      --only ipc-transinr:celeba178 ipc-transinr:shapenet-cars ;;
  esac
}
parts=("${@:2}")
[ ${#parts[@]} -gt 0 ] || read -r -a parts <<< "$defaults"  # default: these parts, in this order
for name in "${parts[@]}"; do run_part "$name"; done
for name in "${parts[@]}"; do  # the tables again, together at the end
  echo "--- $name"
  if [ "$name" = precision ]; then
    awk '/steps from the same weights/{table=1} table' "$log_dir/$name.log" 2>/dev/null
  else
    awk '/^summary:/{table=1} table' "$log_dir/$name.log" 2>/dev/null
  fi
done
