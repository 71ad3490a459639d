#!/usr/bin/env bash
# Reproduce agent/recordings/*.jsonl: real node states of this machine under real antagonists.
#
#   agent/recordings/record.sh            # all four states, about 5 minutes
#   agent/recordings/record.sh cpu io     # only some of them
#
# Each state: wait until the machine is idle (CPU and PSI, so one state's pressure does
# not leak into the next), start the antagonist with a hard stress-ng --timeout, let
# PSI's 10 s average catch up (--warmup, not written), record DURATION seconds at 1 s,
# stop the antagonist.
# Ends with a markdown table of the medians (the one in README.md).
set -euo pipefail

cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-agent/recordings}
DURATION=${DURATION:-25}          # seconds written per state
WARMUP=${WARMUP:-25}              # seconds collected but not written (PSI avg10 is an EWMA with a 10 s time constant)
MEMORY_WARMUP=${MEMORY_WARMUP:-40}  # faulting in 70% of RAM takes ~25-30 s on this VM
IDLE_BUSY_PCT=${IDLE_BUSY_PCT:-10}  # "idle" = CPU busy below this for IDLE_SECONDS in a row
IDLE_SECONDS=${IDLE_SECONDS:-5}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-300}

IO_DIR=$(mktemp -d /tmp/ka-record-io.XXXXXX)
ANTAGONIST=""

cleanup() {
    stop_antagonist
    rm -rf "$IO_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_antagonist() {
    if [[ -n "$ANTAGONIST" ]]; then
        kill -TERM "$ANTAGONIST" 2>/dev/null || true
        wait "$ANTAGONIST" 2>/dev/null || true
        ANTAGONIST=""
    fi
}

# CPU busy percent over one second, from the aggregate line of /proc/stat.
busy_pct() {
    local a b
    a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y); total = 0
        for (i = 2; i <= 9; i++) total += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%d", (total > 0) ? 100 * (1 - idle / total) : 0 }'
}

# Highest "some avg10" percentage of cpu, memory and io pressure (0 without PSI).
max_psi_pct() {
    cat /proc/pressure/{cpu,memory,io} 2>/dev/null | awk '$1 == "some" {
        split($2, kv, "="); if (kv[2] > m) m = kv[2] } END { printf "%d", m + 0 }'
}

# Idle = CPU busy and every PSI avg10 below IDLE_BUSY_PCT for IDLE_SECONDS in a row.
wait_for_idle() {
    local calm=0 waited=0 pct psi
    while (( calm < IDLE_SECONDS )); do
        pct=$(busy_pct); psi=$(max_psi_pct); waited=$((waited + 1))
        if (( pct < IDLE_BUSY_PCT && psi < IDLE_BUSY_PCT )); then calm=$((calm + 1)); else calm=0; fi
        if (( waited >= IDLE_TIMEOUT )); then
            echo "warning: machine not idle after ${IDLE_TIMEOUT}s (CPU ${pct}% busy, PSI ${psi}%); recording anyway" >&2
            return
        fi
    done
}

# record LABEL WARMUP NOTE [ANTAGONIST ARGS...]
record() {
    local label=$1 warmup=$2 note=$3
    shift 3
    wait_for_idle
    if (( $# > 0 )); then
        "$@" --timeout $((warmup + DURATION + 15))s --quiet &
        ANTAGONIST=$!
    fi
    echo "== $label: ${note}" >&2
    timeout $((warmup + DURATION + 60)) "$PY" -m kubeattention.cli --log-level WARNING record \
        --out "$OUT/$label.jsonl" --duration "$DURATION" --warmup "$warmup" --interval 1 \
        --label "$label" --note "$note"
    stop_antagonist
}

want() { (( ${#STATES[@]} == 0 )) || [[ " ${STATES[*]} " == *" $1 "* ]]; }
STATES=("$@")

if want quiet; then
    record quiet 10 "nothing running (machine idle)"
fi
if want cpu; then
    record cpu-contended "$WARMUP" "stress-ng --cpu 4 --cpu-method matrixprod (4 CPU hogs on 2 vCPUs)" \
        stress-ng --cpu 4 --cpu-method matrixprod
fi
if want io; then
    record io-contended "$WARMUP" "stress-ng --hdd 2 --hdd-bytes 512M (sequential write/read hogs on the root disk)" \
        stress-ng --hdd 2 --hdd-bytes 512M --temp-path "$IO_DIR"
fi
if want memory; then
    record memory-contended "$MEMORY_WARMUP" "stress-ng --vm 2 --vm-bytes 70% --vm-keep --vm-populate (70% of RAM held and rewritten)" \
        stress-ng --vm 2 --vm-bytes 70% --vm-keep --vm-populate
fi

"$PY" - "$OUT" <<'EOF'
import statistics, sys
from pathlib import Path
from agent.recording_file import read_recording
from wire.schema import METRICS

rows = []
for label in ("quiet", "cpu-contended", "io-contended", "memory-contended"):
    path = Path(sys.argv[1]) / f"{label}.jsonl"
    if path.exists():
        rows.append((label, read_recording(path).vectors))
measured = [m for m in METRICS if any(v.available[m.index] for _, vs in rows for v in vs)]
print("| state | n | " + " | ".join(m.name for m in measured) + " |")
print("|---|---|" + "---|" * len(measured))
for label, vectors in rows:
    cells = []
    for m in measured:
        values = [v.values[m.index] for v in vectors if v.available[m.index]]
        cells.append(f"{statistics.median(values):.3g}" if values else "missing")
    print(f"| {label} | {len(vectors)} | " + " | ".join(cells) + " |")
EOF
