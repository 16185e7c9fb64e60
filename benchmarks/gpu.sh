#!/usr/bin/env bash
# The GPU side of benchmarks/ in one time-boxed run, for a machine with an NVIDIA GPU
# (JAX runs mess on the GPU; PySCF runs on the same machine's CPU cores):
# versions, then the training, generator and throughput benchmarks, each under its own
# time limit, with their JSON and text results and one log in $OUT.
#
#   OUT=gpu-results bash benchmarks/gpu.sh                   # every step
#   OUT=gpu-results bash benchmarks/gpu.sh throughput        # some steps
#
# At the end the results are packed into $OUT/results.tgz beside the log.
# Sizes are set for the 15 minutes of device time a session may get: on an H200 each
# padding bucket compiles its set of programs in about 36 s (2026-12-04), and a first
# pass over 64 different molecules (several buckets) did not finish in 220 s.
# Limits (seconds) per step: TRAIN_S, GENERATE_S, THROUGHPUT_S, TRAIN_SMALL_S. Python
# packages the machine lacks (PySCF, RDKit) can come as a tarball of an installed
# site-packages tree (tar.xz): SITE_TARBALL=path unpacks it into /tmp/site once.
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
log="$OUT/gpu-log.txt"
if [ -n "${SITE_TARBALL:-}" ] && [ ! -d /tmp/site/pyscf ]; then
  mkdir -p /tmp/site && tar -xJf "$SITE_TARBALL" -C /tmp/site || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
PY=${PYTHON:-python3}
steps=${*:-train generate throughput train-small}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import jax, pyscf, rdkit; print('jax', jax.__version__, jax.devices(), 'pyscf', pyscf.__version__, 'rdkit', rdkit.__version__)"
} >>"$log" 2>&1
for s in $steps; do
  case $s in
    train) limit=${TRAIN_S:-80}; cmd=(benchmarks/train.py --repeat 20 --no-scf-scale) ;;
    train-small) limit=${TRAIN_SMALL_S:-70}; cmd=(benchmarks/train.py --model small --batch-size 64 --repeat 10) ;;
    generate) limit=${GENERATE_S:-180}; cmd=(benchmarks/generate.py --n 8 --conformers 4 --pyscf-n 2 --shard-size 8) ;;
    throughput) limit=${THROUGHPUT_S:-220}
      cmd=(benchmarks/throughput.py --n 16 --pyscf-n 2 --modes fixed --precisions float64 mixed) ;;
    compiles) limit=${COMPILES_S:-120}; export JAX_LOG_COMPILES=1  # each program's compile time in the log
      cmd=(benchmarks/throughput.py --n 4 --pyscf-n 1 --modes fixed) ;;
    *) echo "unknown step $s (train, train-small, generate, throughput, compiles)" >&2; exit 2 ;;
  esac
  echo "== $s $(date -u +%T) limit ${limit} s: ${cmd[*]}" >>"$log"
  timeout -k 10 -s INT "$limit" "$PY" "${cmd[@]}" --out "$OUT" >>"$log" 2>&1
  rc=$?
  echo "== $s $(date -u +%T) exit $rc" >>"$log"
done
# one archive of every result beside the log (a transfer may bring back few files)
(cd "$OUT" && tar -czf results.tgz --exclude=results.tgz --exclude=gpu-log.txt . && find . -type f \
  ! -name results.tgz ! -name gpu-log.txt -delete)
