#!/bin/bash
# Start the background queue (tools/background_queue.sh) on this machine, or say that it runs already: the
# checkouts it needs are made where missing, the script is copied out of the checkout (bash reads a script as
# it runs, so a later edit of this checkout cannot reach a running queue) and started in its own session,
# detached, appending to a log. A new machine needs this one command (after the venv of the README); the same
# command later in a session changes nothing while the queue runs.
#
#   tools/start_queue.sh [--dry-run] [BASE]      (BASE: where the checkouts and the log go; default: beside this one)
#
# BASE/run      the queue's WORKTREE (results/ with the committed protocol files; weights stay there), at HEAD
# BASE/frozen   CODE: commit FROZEN below, whose code trains and audits every queued protocol (results/mnist-cnn-ten/)
# BASE/dcode    DCODE: this checkout's HEAD, which decomposes and refills controls alone (background_queue.sh)
# BASE/queue.log  the log; then: python tools/collect_results.py BASE/run
# NANOSGM_DATA must name the folder with mnist/; PY (default: this checkout's .venv/bin/python).
set -eu
FROZEN=b8b8142
usage="usage: tools/start_queue.sh [--dry-run] [BASE]"
dry=0 given=()
for a in "$@"; do
  case $a in
    --dry-run) dry=1 ;;
    -*) echo "error: no option $a; $usage" >&2; exit 2 ;;
    *) given+=("$a") ;;
  esac
done
[ ${#given[@]} -le 1 ] || { echo "error: one BASE at most, got ${given[*]}; $usage" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
base=$(cd "$here/.." && pwd)                   # the default: beside this checkout
if [ ${#given[@]} = 1 ]; then
  [ -n "${given[0]}" ] || { echo "error: BASE is empty; name a folder, or leave it out for $base" >&2; exit 2; }
  base=$(CDPATH= cd -- "${given[0]}" 2> /dev/null && pwd) || { echo "error: no folder ${given[0]}" >&2; exit 2; }
fi
py=${PY:-$here/.venv/bin/python}
[ -n "${NANOSGM_DATA:-}" ] || { echo "error: set NANOSGM_DATA to the folder with mnist/ (e.g. ../shared/data)" >&2; exit 2; }
[ -d "$NANOSGM_DATA/mnist" ] || { echo "error: NANOSGM_DATA=$NANOSGM_DATA holds no mnist/ folder; point it at the folder with mnist/" >&2; exit 2; }
NANOSGM_DATA=$(CDPATH= cd -- "$NANOSGM_DATA" && pwd)    # absolute: the queue runs its commands from other folders
[ -f "$py" ] && [ -x "$py" ] || { echo "error: no python at $py; make the venv first (README) or set PY" >&2; exit 2; }
run=$base/run frozen=$base/frozen dcode=$base/dcode log=$base/queue.log

do_() { if [ $dry = 1 ]; then echo "would run: $*"; else "$@"; fi; }

if pgrep -f "queue.sh $run( |$)" > /dev/null; then
  echo "the queue runs already (pid $(pgrep -f "queue.sh $run( |$)" | head -1)); its log: $log"
  exit 0
fi
[ -d "$run" ] || do_ git -C "$here" worktree add --detach "$run" HEAD
[ -d "$frozen" ] || do_ git -C "$here" worktree add --detach "$frozen" "$FROZEN"
[ -d "$dcode" ] || do_ git -C "$here" worktree add --detach "$dcode" HEAD
do_ cp "$here/tools/background_queue.sh" "$base/queue.sh"
if [ $dry = 1 ]; then
  echo "would start: CODE=$frozen DCODE=$dcode PY=$py $base/queue.sh $run >> $log"
  exit 0
fi
CODE=$frozen DCODE=$dcode PY=$py NANOSGM_DATA=$NANOSGM_DATA setsid nohup bash "$base/queue.sh" "$run" \
  >> "$log" 2>&1 < /dev/null &
echo "started the queue (pid $!): CODE=$frozen DCODE=$dcode; its log: $log"
echo "as its files finish: python tools/collect_results.py $run"
