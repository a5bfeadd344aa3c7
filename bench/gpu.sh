#!/usr/bin/env bash
# The full-size GPU measurements of docs/performance.md in one command (issue 13), meant to finish in
# under 8 minutes on one H100/H200; writes one JSON per variant and summary.json into $OUT_DIR.
#
#   bench/gpu.sh                                   # full size on the GPU, into bench-gpu/
#   METALLO_GPU_BENCH_SIZE=tiny bench/gpu.sh       # the same script at test size on the CPU (seconds)
#
# Variants: toynet-eager (all four sections; 8192 samples so that each of the 16 DataLoader workers
# of the old pipeline gets two batches of 256), then toynet-compile and metallonet-eager (the
# training sections (c) and (d) only, 2048 samples). (d) is the train stage with params.yaml and
# train.profile=gpu. Override the list with METALLO_GPU_BENCH_VARIANTS="toynet-eager ...".
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-bench-gpu}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT_DIR"

if [ "${METALLO_GPU_BENCH_SIZE:-full}" = tiny ]; then
  COMMON=(--image-size 48 --model-image-size 32 --spectra-length 64 --batch-size 4 --steps 2 --warmup-steps 1
          --passes 1 --workers 0 --device cpu --convert-workers 1 --threads 1)
  ALL_SAMPLES=16; TRAIN_SAMPLES=16
  VARIANTS=${METALLO_GPU_BENCH_VARIANTS:-"toynet-eager metallonet-eager"}  # no compile: minutes on a CPU
else
  COMMON=(--image-size 300 --model-image-size 300 --spectra-length 1600 --batch-size 256 --steps 30
          --warmup-steps 5 --passes 1 --workers 16 --device cuda --profile gpu)
  ALL_SAMPLES=8192; TRAIN_SAMPLES=2048
  VARIANTS=${METALLO_GPU_BENCH_VARIANTS:-"toynet-eager toynet-compile metallonet-eager"}
fi

for variant in $VARIANTS; do
  model=${variant%-*}
  mode=${variant#*-}
  extra=()
  if [ "$mode" = compile ]; then extra+=(--compile --warmup-steps 10); fi
  if [ "$variant" = toynet-eager ]; then
    extra+=(--samples "$ALL_SAMPLES")
  else
    extra+=(--samples "$TRAIN_SAMPLES" --sections train_step_on_device train_stage)
  fi
  echo "bench/gpu.sh: $variant" >&2
  start=$(date +%s)
  "$PYTHON" -m metallo.bench "${COMMON[@]}" --model "$model" "${extra[@]}" --out "$OUT_DIR/$variant.json"
  echo "bench/gpu.sh: $variant took $(( $(date +%s) - start )) s" >&2
done

"$PYTHON" - "$OUT_DIR" $VARIANTS <<'PY'
import json, sys
from pathlib import Path

out, variants = Path(sys.argv[1]), sys.argv[2:]
summary = {}
for variant in variants:
    result = json.loads((out / f"{variant}.json").read_text())
    summary[variant] = {"samples_per_s": {k: v["samples_per_s"] for k, v in result["sections"].items()},
                        "train_stage": result["sections"].get("train_stage"), "ratios": result["ratios"],
                        "config": result["config"], "gpu": result["machine"].get("gpu")}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"bench/gpu.sh: {out / 'summary.json'}")
PY
