#!/usr/bin/env bash
# One prepared accelerator check, at most 8 minutes on one H100 (benchmarks/RESULTS.md "GPU").
#
#   bash benchmarks/device_check.sh [--smoke] [--out=DIR] [--wheels=DIR] [--budget=SECONDS]
#
# Run from the repository root. Stages, each bounded so that the whole stays in --budget
# (default 470 s); a stage that fails or runs out of time is reported and the next one runs:
#   1. largest_batch.py: the largest ViT-B/16 CLIP batch whose bf16 step fits the GPU;
#   2. train_step.py at that batch: attention xla against cudnn, the matmul peak of the same
#      run and MFU against it, and transformers' CLIPModel (bf16 autocast) at the same
#      dimensions, in alternating rounds (retried without the peer, then without cudnn, if
#      the run fails);
#   3. train_step.py: the CLIP, SigLIP and xCLIP steps at that batch (half of it if not);
#   4. train_step.py --compile_only: step memory without and with full rematerialisation;
#   5. device_report.py: the tables, from the JSON of stages 1-4, in DIR/report.md.
# The GPU machine has JAX and PyTorch but no package index: --wheels=DIR installs what else
# is missing (flax, optax, orbax-checkpoint, clu, ...) from wheels carried in DIR, offline.
# --smoke runs every stage on a toy model on the CPU in a few minutes (tests/test_benchmarks.py);
# there cudnn cannot run, so stage 2 compares attention xla with auto (which resolves to xla).
set -u -o pipefail

SMOKE=0
OUT="${OUT:-/tmp/device_check}"
WHEELS=""
BUDGET=470
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    --out=*) OUT="${arg#--out=}" ;;
    --wheels=*) WHEELS="${arg#--wheels=}" ;;
    --budget=*) BUDGET="${arg#--budget=}" ;;
    *) echo "error: unknown argument '$arg'; see the header of benchmarks/device_check.sh." >&2
       exit 2 ;;
  esac
done
mkdir -p "$OUT"
PY="${PYTHON:-python}"
cd "$(dirname "$0")/.."

if [ "$SMOKE" = 1 ]; then
  export JAX_PLATFORMS=cpu
  MODEL=smoke; PRECISION=float32; MULTIPLE=8; MEMORY="--memory_gib=0.25"
  ATTENTION="float32,attention=xla;float32,attention=auto"; ATT_FALLBACK="float32,attention=xla"
  TORCH=float32; REPEATS=1; WARMUP=1
else
  MODEL=B/16; PRECISION=bfloat16; MULTIPLE=32; MEMORY=""
  ATTENTION="bfloat16,attention=xla;bfloat16,attention=cudnn"
  ATT_FALLBACK="bfloat16,attention=xla"
  TORCH=bf16_autocast; REPEATS=5; WARMUP=2
fi

log() { echo "[device_check ${SECONDS}s] $*" | tee -a "$OUT/log.txt" >&2; }

# stage NAME SECONDS COMMAND...: runs COMMAND with stdout to OUT/NAME.json, bounded by
# SECONDS and by what is left of the budget; returns its status.
stage() {
  local name="$1" limit="$2"; shift 2
  local left=$((BUDGET - SECONDS - 5))
  if [ "$left" -lt 20 ]; then log "$name: skipped, the budget is spent"; return 124; fi
  [ "$limit" -gt "$left" ] && limit="$left"
  log "$name: $* (at most ${limit} s)"
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.json" 2>> "$OUT/$name.log"
  local status=$?
  log "$name: exit $status"
  return $status
}

log "output in $OUT; budget ${BUDGET} s; smoke=$SMOKE"
{ command -v nvidia-smi > /dev/null && nvidia-smi -L; "$PY" -c "
import jax, platform; print('python', platform.python_version(), 'jax', jax.__version__,
jax.devices())"; } > "$OUT/environment.txt" 2>&1
if [ -n "$WHEELS" ]; then
  missing=$("$PY" - <<'EOF'
import importlib.util
need = {"flax": "flax", "optax": "optax", "orbax": "orbax-checkpoint", "chex": "chex",
        "ml_collections": "ml-collections", "clu": "clu", "einops": "einops",
        "grain": "grain", "sentencepiece": "sentencepiece", "etils": "etils",
        "transformers": "transformers", "matplotlib": "matplotlib"}
print(" ".join(p for m, p in need.items() if importlib.util.find_spec(m) is None))
EOF
)
  if [ -n "$missing" ]; then
    log "installing from $WHEELS: $missing"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" $missing >> "$OUT/log.txt" 2>&1 \
      || log "some wheels did not install; stages needing them will fail"
  fi
fi
cat "$OUT/environment.txt" >&2

BATCH=$MULTIPLE
if stage largest_batch 110 "$PY" benchmarks/largest_batch.py --model=$MODEL \
    --precision=$PRECISION --multiple=$MULTIPLE $MEMORY; then
  BATCH=$("$PY" -c "import json; print(json.load(open('$OUT/largest_batch.json'))['batch'])")
fi
log "batch $BATCH"

STEP=("$PY" benchmarks/train_step.py --model=$MODEL --batch=$BATCH --json
      --repeats=$REPEATS --warmup=$WARMUP)
stage attention 170 "${STEP[@]}" --variants="$ATTENTION" --torch=$TORCH \
  || stage attention 120 "${STEP[@]}" --variants="$ATTENTION" \
  || stage attention 90 "${STEP[@]}" --variants="$ATT_FALLBACK"

stage objectives 110 "${STEP[@]}" --objective=clip,siglip,xclip --precision=$PRECISION \
  || stage objectives 80 "$PY" benchmarks/train_step.py --model=$MODEL \
       --batch=$((BATCH / 2 / MULTIPLE * MULTIPLE > 0 ? BATCH / 2 / MULTIPLE * MULTIPLE : MULTIPLE)) \
       --json --repeats=$REPEATS --warmup=$WARMUP --objective=clip,siglip,xclip \
       --precision=$PRECISION

stage remat 80 "$PY" benchmarks/train_step.py --model=$MODEL --batch=$BATCH --json \
  --compile_only --variants="$PRECISION,remat=none;$PRECISION,remat=full"

"$PY" benchmarks/device_report.py "$OUT" > "$OUT/report.md" 2>> "$OUT/log.txt"
status=$?
cat "$OUT/report.md"
log "done (report exit $status)"
exit $status
