#!/usr/bin/env bash
# Benchmark `seamfs database` against the Python seamless-database, in one run, same machine,
# same load: wrk with 32 keep-alive connections, two request mixes:
#   mix  80 % GETs (half hits, half misses) and 20 % PUTs of new transformation results
#   get  100 % GET hits (small requests, small answers)
# Each (server, mix) is run RUNS times; the median requests/s and p99 latency are printed side
# by side with the ratio. Note: the load generator shares the cores with the server.
#
# Usage: scripts/bench-db.sh [DURATION_SECONDS (default 5)] [RUNS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
runs=${2:-3}

scripts/setup-system wrk
[ -x .venv/bin/seamless-database ] || { echo "bench-db: .venv is missing: run scripts/setup-python" >&2; exit 1; }
cargo build --release --bin seamfs >&2
seamfs=target/release/seamfs

work=$(mktemp -d)
# start_server runs in a command substitution (a subshell), so server pids go to files.
cleanup() {
    for pidfile in "$work"/*.pid; do
        [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT

# The request mix, as a wrk Lua script: 1000 stored keys (hits), misses and fresh PUT keys.
cat > "$work/mix.lua" <<'LUA'
local get_share = tonumber(os.getenv("GET_SHARE") or "0.8")
local hit_share = tonumber(os.getenv("HIT_SHARE") or "0.5")
local counter = 0
local thread_id = 0
local threads = 0
setup = function(thread)
    thread:set("thread_id", threads)
    threads = threads + 1
end
init = function(args)
    math.randomseed(thread_id * 7919 + 17)
end
local function key(i) return string.format("%064x", i) end
request = function()
    local r = math.random()
    if r < get_share then
        local k
        if math.random() < hit_share then k = key(math.random(0, 999)) else k = key(1000000 + math.random(0, 999999)) end
        return wrk.format("GET", "/", nil, '{"type": "transformation", "checksum": "' .. k .. '"}')
    end
    counter = counter + 1
    local k = key(2000000000 + thread_id * 100000000 + counter)
    return wrk.format("PUT", "/", nil, '{"type": "transformation", "checksum": "' .. k .. '", "value": "' .. key(7) .. '"}')
end
done = function(summary, latency, requests)
    -- 404s (the misses) are answers, not errors: count only socket errors.
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT %.1f %.3f %d\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, errors))
end
LUA

# Start a server; prints its port. $1 = name, then the command.
start_server() {
    local name=$1; shift
    echo '{}' > "$work/$name.status"
    "$@" --status-file "$work/$name.status" > "$work/$name.log" 2>&1 &
    echo $! > "$work/$name.pid"
    for _ in $(seq 300); do
        if grep -q '"running"' "$work/$name.status" 2>/dev/null; then
            sed -E 's/.*"port": ([0-9]+).*/\1/' "$work/$name.status"
            return
        fi
        sleep 0.1
    done
    echo "bench-db: $name did not start; its log:" >&2; cat "$work/$name.log" >&2; exit 1
}

# Store the 1000 hit keys through the server's own PUT path.
populate() {
    .venv/bin/python - "$1" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(1000):
    body = '{"type": "transformation", "checksum": "%064x", "value": "%064x"}' % (i, i + 5000000)
    conn.request("PUT", "/", body)
    resp = conn.getresponse(); resp.read()
    assert resp.status == 200, resp.status
PY
}

py_port=$(start_server python .venv/bin/seamless-database "$work/py.db" --port-range 40000 48999 --host 127.0.0.1 --writable)
rs_port=$(start_server seamfs "$seamfs" database "$work/rs.db" --port-range 40000 48999 --host 127.0.0.1 --writable)
populate "$py_port"
populate "$rs_port"

# One wrk run: prints "rps p99_ms errors".
run_wrk() {
    local port=$1 get_share=$2
    GET_SHARE=$get_share HIT_SHARE=$3 wrk -t2 -c32 -d"${duration}s" --latency -s "$work/mix.lua" "http://127.0.0.1:$port/" \
        | awk '/^RESULT/ {print $2, $3, $4}'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-5s %-8s %12s %10s %8s\n" mix server "requests/s" "p99 ms" "socket errors"
declare -A rps p99
for mix in mix get; do
    if [ "$mix" = mix ]; then share=0.8; hits=0.5; else share=1.0; hits=1.0; fi
    for server in python seamfs; do
        port=$py_port; [ "$server" = seamfs ] && port=$rs_port
        : > "$work/runs"
        for _ in $(seq "$runs"); do run_wrk "$port" "$share" "$hits" >> "$work/runs"; done
        rps[$mix.$server]=$(cut -d' ' -f1 "$work/runs" | median)
        p99[$mix.$server]=$(cut -d' ' -f2 "$work/runs" | median)
        errors=$(awk '{s+=$3} END {print s}' "$work/runs")
        printf "%-5s %-8s %12.0f %10.2f %8d\n" "$mix" "$server" "${rps[$mix.$server]}" "${p99[$mix.$server]}" "$errors"
    done
    awk -v a="${rps[$mix.seamfs]}" -v b="${rps[$mix.python]}" -v c="${p99[$mix.python]}" -v d="${p99[$mix.seamfs]}" -v m="$mix" \
        'BEGIN {printf "%-5s ratio    %11.1fx %9.1fx  (seamfs/python throughput, python/seamfs p99)\n", m, a/b, c/d}'
done
echo "(medians of $runs runs of ${duration}s, wrk -t2 -c32, on $(nproc) cores shared with the load generator)"
