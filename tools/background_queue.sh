#!/bin/bash
# The long runs of issues 21, 24 and 27, one after another, on a 2-core CPU (two or three networks, or two audit
# workers, at a time, one BLAS thread each). Every step resumes where it stopped (protocols from their epoch checkpoints, audits
# from their partial files) and skips what is finished, so after a session's end the same command goes on. A seed
# is audited as soon as its networks exist (trained, or refilled with --only-runs when a session or a machine lost
# their weights), so that each finished seed's robustness.json can be committed before the weights are lost again:
#
#   tools/background_queue.sh WORKTREE [STEP ...]     (steps: the names below; default all, in the order of
#                                                      `all_steps` at the end: issue 27's fifty epochs before
#                                                      dnn_again, a follow-up of issue 21's DNN gap)
#
# (tools/start_queue.sh makes WORKTREE, CODE and DCODE on a new machine and starts this detached.)
#
# WORKTREE: a checkout (git worktree add ../run <commit>) whose results/ holds the protocol folders, with the
# committed protocol.json files copied in. CODE: the frozen checkout whose code trains, refills weights, audits,
# decomposes and runs the tools (default WORKTREE), so that later edits of the main checkout cannot reach the
# runs; a later commit must reproduce the training bit for bit, which --refill-weights checks network by network.
# DCODE: the checkout whose code decomposes the authors' FGSM and refills future-work's controls alone (default
# CODE; one whose nanosgm.decompose has --partial-only and --require-all, and nanosgm.experiments --only-arms; a
# refill keeps weights only where they are the recorded ones). A seed of the ten pairs or of the fifty-epoch
# protocol is one unit that fits a session: its three networks trained at once, decomposed while its weights exist
# (into the folder's decomposition.partial.json, which collect_results brings back to be committed, so that the
# final decomposition needs no weights trained again), then audited.
# NANOSGM_DATA must name the folder with mnist/. PY: the python to use (default: python). Weights (models/) stay
# in WORKTREE/results and are never committed; python tools/collect_results.py WORKTREE (run in the main
# checkout) brings each finished protocol.json, robustness/seed* and table back into it, each checked first.
set -u
[ $# -ge 1 ] || { echo "usage: tools/background_queue.sh WORKTREE [STEP ...]" >&2; exit 2; }
W=$(cd "$1" && pwd) || { echo "error: no folder $1" >&2; exit 2; }; shift
R=$W/results
C=$(cd "${CODE:-$W}" && pwd) || { echo "error: CODE=${CODE:-} is no folder" >&2; exit 2; }
D=$(cd "${DCODE:-$C}" && pwd) || { echo "error: DCODE=${DCODE:-} is no folder" >&2; exit 2; }
PY=${PY:-python}
export OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" MPLBACKEND=Agg
[ -n "${NANOSGM_DATA:-}" ] || { echo "error: set NANOSGM_DATA to the folder with mnist/" >&2; exit 2; }
(cd "$D" && PYTHONPATH=$D $PY -m nanosgm.decompose --help | grep -q -- --partial-only \
   && PYTHONPATH=$D $PY -m nanosgm.experiments --help | grep -q -- --only-arms) \
  || { echo "error: DCODE=$D has no decompose --partial-only or experiments --only-arms; give a newer checkout" >&2; exit 2; }

WORKERS=2           # networks trained at once, one BLAS thread each (a seed's three networks: WORKERS=3, below)
experiments_in() { local code=$1; shift        # python -m nanosgm.experiments mnist from the checkout $1
  (cd "$code" && PYTHONPATH=$code $PY -m nanosgm.experiments mnist --model "$@" --pgd 1000 --workers "$WORKERS" \
     --threads 1 --no-progress); }
train() { experiments_in "$C" "$@"; }
refill() { experiments_in "$C" "$@" --refill-weights; }
decompose_in() {   # protocol folder $1's saved networks, one BLAS thread as they were trained (the same numbers each
  local P=$1; shift  # session)
  (cd "$D" && OPENBLAS_NUM_THREADS=1 NANOSGM_THREADS=1 PYTHONPATH=$D $PY -m nanosgm.decompose "$R/$P" \
     -n 1000 --no-progress "$@")
}
FUTURE_ARMS=sgm-sign:0.01,sgm-adam:0.01,gradreg:0.01,gradreg:0.1
TEN_ARMS=sgm:0.2,sgm:0.2:per-sample
TEN=(cnn --runs 10 --epochs 10 --arms $TEN_ARMS)                       # results/mnist-cnn-ten/README.md
FIFTY=(cnn --runs 3 --epochs 50 --arms $TEN_ARMS --watch-fgsm 10)      # results/mnist-cnn-50/README.md

future_work() {     # issue 24: five pairs of the four future-work arms (results/future-work/README.md)
  train cnn --runs 5 --epochs 10 --arms $FUTURE_ARMS --out "$R/future-work"
}

audit_seed() {      # one seed of one protocol: every saved network of the run, as results/robustness/README.md
  local P=$1 i=$2 arms out nets=""
  case $P in
    future-work) arms="control sgm-sign_0.01 sgm-adam_0.01 gradreg_0.01 gradreg_0.1" ;;
    *) arms="control sgm_0.2 sgm_0.2_per-sample" ;;
  esac
  out=$R/$P/robustness/seed$i
  [ -f "$out/robustness.json" ] && return 0
  mkdir -p "$out"
  # the ten pairs' controls of seeds 0-4 are future-work's: its finished attacks are reused where the digests agree
  [ "$P" != mnist-cnn-ten ] || [ -f "$out/robustness.partial.json" ] \
    || [ ! -f "$R/future-work/robustness/seed$i/robustness.partial.json" ] \
    || cp "$R/future-work/robustness/seed$i/robustness.partial.json" "$out/"
  for a in $arms; do
    [ -f "$R/$P/models/run$i-$a.npz" ] || { echo "$P seed $i: no weights of $a"; return 1; }
    nets="$nets $R/$P/models/run$i-$a.npz"
  done
  echo "== audit $P seed $i $(date -u +%FT%TZ)"
  (cd "$C" && OPENBLAS_NUM_THREADS=1 NANOSGM_THREADS=1 PYTHONPATH=$C $PY -m nanosgm.robustness $nets --eps 0.1,0.2,0.3 --images 1000 --out "$out" \
     --keep-partial --no-progress --workers 2) >> "$out.log" 2>&1
}

future_audits() {   # issue 24: each seed's weights again where lost (run 4 first: its gradreg networks are new), audited
  for i in 4 3 2 1 0; do
    [ -f "$R/future-work/robustness/seed$i/robustness.json" ] && continue
    refill cnn --runs 5 --epochs 10 --arms $FUTURE_ARMS --only-runs $i --out "$R/future-work" || return 1
    audit_seed future-work $i || return 1
  done
}

seed_done() {      # one seed of protocol folder $1 (its flags: $3 ...), whole within a session: its three networks
  local P=$1 i=$2 WORKERS=3; shift 2   # at once (three workers on the two cores: none idles while a third trains),
  [ -f "$R/$P/robustness/seed$i/robustness.json" ] && return 0   # or their lost weights refilled; decomposed while the
  train "$@" --only-runs $i --out "$R/$P" || return 1               # weights exist; then audited
  refill "$@" --only-runs $i --out "$R/$P" || return 1
  # a failed decomposition does not hold up the audit: the protocol's final decomposition refills what it lacks
  [ -f "$R/$P/decomposition.json" ] || decompose_in "$P" --partial-only \
    || echo "== decomposition of $P seed $i failed (above); its final decomposition refills what it lacks"
  audit_seed "$P" $i
}

decompose_all() {  # protocol folder $1 (its flags: $2 ...) decomposed whole, from its partial file; weights refilled
  local P=$1 err=$R/$1/decompose.err runs rc; shift   # only for the runs it lacks (--require-all: exit 3, runs named)
  [ -f "$R/$P/decomposition.json" ] && return 0
  [ -d "$R/$P" ] || { echo "error: no protocol folder $R/$P to decompose: its step comes first" >&2; return 1; }
  decompose_in "$P" --require-all 2> "$err"; rc=$?
  cat "$err" >&2
  [ $rc -eq 0 ] && return 0
  [ $rc -eq 3 ] || return 1
  runs=$(sed -n 's/.*--only-runs \([0-9,]*\)).*/\1/p' "$err")
  [ -n "$runs" ] || return 1
  refill "$@" --only-runs "$runs" --out "$R/$P" || return 1
  decompose_in "$P" --require-all
}

ten_pairs() {       # issue 21: MNIST-CNN seeds 0-9 of the control and both SGM arms, the five new seeds first
  local i
  for i in 5 6 7 8 9 0 1 2 3 4; do seed_done mnist-cnn-ten $i "${TEN[@]}" || return 1; done
}

dnn_again() {       # issue 21: the MNIST-DNN control and sgm:0.2 weights again, then the transfer table
  # the weights of the committed records, each checked against its record (--refill-weights); of future-work only
  # the controls, which craft the examples (--only-arms: DCODE; its 20 other networks would cost about 6 hours)
  [ -f "$R/mnist-dnn-conventions/transfer-cnn-to-dnn-table.json" ] && return 0
  refill dnn --runs 5 --epochs 10 --arms sgm:0.2 --out "$R/mnist-dnn-conventions" || return 1
  experiments_in "$D" cnn --runs 5 --epochs 10 --arms $FUTURE_ARMS --out "$R/future-work" --refill-weights \
    --only-arms control || return 1
  (cd "$C" && OPENBLAS_NUM_THREADS=1 PYTHONPATH=$C $PY tools/transfer_table.py "$R/future-work" \
     "$R/mnist-dnn-conventions" --json "$R/mnist-dnn-conventions/transfer-cnn-to-dnn-table.json")
}

decomposition() {   # issue 27: the authors' FGSM taken apart on the ten pairs' networks
  decompose_all mnist-cnn-ten "${TEN[@]}"
}

fifty_epochs() {    # issue 27: MNIST-CNN at the paper's length, seeds 0-2 like the ten pairs, then decomposed whole
  local i
  for i in 0 1 2; do seed_done mnist-cnn-50 $i "${FIFTY[@]}" || return 1; done
  decompose_all mnist-cnn-50 "${FIFTY[@]}"
}

all_steps=(future_work future_audits ten_pairs decomposition fifty_epochs dnn_again)   # the default, in order
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=("${all_steps[@]}")
for s in "${steps[@]}"; do
  case " ${all_steps[*]} " in
    *" $s "*) ;; *) echo "error: no step $s" >&2; exit 2 ;;
  esac
  echo "== $s $(date -u +%FT%TZ)"
  "$s" || { echo "== $s failed"; exit 1; }
done
echo "== done $(date -u +%FT%TZ)"
