#!/usr/bin/env bash
# The GPU checks in one command, for a machine where GPU time is short: after every step OUT holds
# the benchmark JSON and gpu_checks.tgz (every log, summary and metrics file so far, checkpoints
# left out), and a step that breaks does not stop the ones after it.
#
#   bash benchmarks/gpu_checks.sh OUT DATA [speed|rest|sweeps|answer|all]
#
# OUT: a folder for the results; DATA: the JPEG copy (cifar10-jpeg.tar.gz or its unpacked root).
#   speed  python -m benchmarks.cifar_speed's speedrun, bare, profile and airbench parts, one
#          experiment=speedrun run through the CLI (GradCAM gallery on the compiled bf16 model),
#          and a one-GPU torchrun (NCCL) run
#   rest   the benchmark's baseline and sweep parts, experiment=seed_replica for its 20 epochs,
#          and README's multirun `scheduler.max_lr=0.01,0.05,0.1` with the default recipe
#   sweeps python -m benchmarks.sweep_pruning: 16-trial speedrun sweeps without and with pruners,
#          batches of two against two always-busy workers (both workers on the one GPU)
#   answer python -m benchmarks.lr_window (max_lr grid and weight-decay grid per optimizer) and
#          python -m benchmarks.sweep_quality (the default sweep against an oracle grid) at speedrun size
# COMPILE_CACHE=<file.tgz>: torch.compile's cache is restored from it when it exists and saved to
# it at the end, so that a second session on a fresh machine of the same kind skips compilation.
# STEP_TIMEOUT (seconds, default 900) bounds each step; PYTHON (default python3) is the interpreter with torch.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_checks.sh OUT DATA [speed|rest|sweeps|answer|all]}
data=${2:?usage: bash benchmarks/gpu_checks.sh OUT DATA [speed|rest|sweeps|answer|all]}
which=${3:-all}
py=${PYTHON:-python3}
mkdir -p "$out"
work=$(mktemp -d /tmp/gpu_checks.XXXX)
export TORCHINDUCTOR_CACHE_DIR=/tmp/resnet_lab_inductor
mkdir -p "$TORCHINDUCTOR_CACHE_DIR"
if [ -n "${COMPILE_CACHE:-}" ] && [ -f "$COMPILE_CACHE" ]; then tar xzf "$COMPILE_CACHE" -C "$TORCHINDUCTOR_CACHE_DIR"; fi
export PYTHONUNBUFFERED=1

if [ -d "$data" ]; then
  root=$data
else
  mkdir -p /tmp/resnet_lab_data && tar xzf "$data" -C /tmp/resnet_lab_data || exit 2
  root=$(dirname "$(ls -d /tmp/resnet_lab_data/*/train)")
fi
common=(data=image_folder "data.root=$root" logger=none trainer.progress=false)

step() {  # step NAME COMMAND...: runs it, logs to OUT/NAME.log, records its exit code and time
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  timeout -k 10 "${STEP_TIMEOUT:-900}" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$work/steps.txt"
  tail -n 4 "$work/$name.log"
  for f in "$work"/*/20*.json; do [ -f "$f" ] && cp "$f" "$out/$(basename "$(dirname "$f")")-$(basename "$f")"; done
  tar czf "$out/gpu_checks.tgz" --exclude='*.pt' --exclude=.resnet_lab_cache -C "$work" .
  if [ -n "${COMPILE_CACHE:-}" ]; then tar czf "$COMPILE_CACHE" -C "$TORCHINDUCTOR_CACHE_DIR" .; fi
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$py" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])'
  git rev-parse HEAD 2>/dev/null; date -u; } | tee "$work/machine.txt"

if [ "$which" = speed ] || [ "$which" = all ]; then
  step speed "$py" -m benchmarks.cifar_speed --data "$root" --out "$work/speed" --parts speedrun,bare,profile,airbench
  step cli_speedrun "$py" -m resnet_lab.train experiment=speedrun "${common[@]}" hydra.run.dir="$work/cli_run"
  step torchrun_nccl "$py" -m torch.distributed.run --standalone --nproc_per_node=1 -m resnet_lab.train trainer.strategy=ddp experiment=speedrun \
    trainer.epochs=2 explain=none "${common[@]}" hydra.run.dir="$work/ddp_run"
fi
if [ "$which" = rest ] || [ "$which" = all ]; then
  step rest "$py" -m benchmarks.cifar_speed --data "$root" --out "$work/rest" --parts baseline,sweep
  step seed_replica "$py" -m resnet_lab.train experiment=seed_replica explain=none "${common[@]}" hydra.run.dir="$work/seed_replica"
  step readme_multirun "$py" -m resnet_lab.train -m scheduler.max_lr=0.01,0.05,0.1 explain=none "${common[@]}" \
    hydra.sweep.dir="$work/multirun"
fi
if [ "$which" = sweeps ] || [ "$which" = all ]; then
  step sweep_pruning "$py" -m benchmarks.sweep_pruning --data "$root" --out "$work/sweep_pruning"
fi
if [ "$which" = answer ] || [ "$which" = all ]; then
  step lr_window "$py" -m benchmarks.lr_window --data "$root" --out "$work/lr_window"
  step sweep_quality "$py" -m benchmarks.sweep_quality --data "$root" --out "$work/sweep_quality"
fi
cat "$work/steps.txt"
