#!/usr/bin/env bash
# One lent GPU: run a protocol on CuPy within a time limit and collect what comes back.
#
#   tools/gpu_protocol.sh NAME SECONDS MODELS -- <python -m nanosgm.experiments arguments, without --out>
#
# MNIST is read from data/ in the checkout (git-ignored; copy it there and carry it). The protocol is
# written to runs/gpu-NAME and stopped (SIGINT: the finished networks stay recorded) after SECONDS; then
# protocol.json, the log, the snapshots and the model files named by the MODELS glob (packed three to a
# tar file, at most four files) are copied to $OUT. Run the same command again on a warm machine to resume.
set -uo pipefail
name=$1 seconds=$2 models=$3; shift 4
out=runs/gpu-$name
export NANOSGM_DATA=$PWD/data PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$out"
nvidia-smi -L | tee "$OUT/$name.log"
timeout -s INT "$seconds" python -m nanosgm.experiments mnist "$@" --backend cupy --out "$out" --no-progress \
  2>&1 | grep -v "^  run" | tee -a "$OUT/$name.log" | tail -25
cp "$out"/protocol.json "$OUT/$name-protocol.json"
cp "$out"/snapshots-*.npz "$OUT/" 2>/dev/null
files=$(cd "$out/models" 2>/dev/null && ls $models 2>/dev/null | head -12)
i=0
for chunk in $(echo $files | xargs -n 3 | tr ' ' ','); do
  tar -C "$out/models" -cf "$OUT/$name-models-$i.tar" $(echo "$chunk" | tr ',' ' ')
  i=$((i + 1))
done
ls -la "$OUT"
