#!/usr/bin/env bash
# Benchmark `seamfs hashserver` against the Python hashserver 1.1.0, in one run, same machine,
# same load, each on its own buffer directory:
#   get4k   GET of 1000 distinct stored 4 KiB buffers, wrk, 32 keep-alive connections
#   put4k   PUT of distinct 4 KiB buffers (never stored before), wrk, 32 connections, 2 s runs
#           (each run and thread has 33 333 fresh buffers; past them the last one repeats: 201)
#   has     GET /has with 1000 checksums (half stored), wrk, 32 connections
#   get1g   GET of a 1 GiB buffer with curl, beside curl copying the same file (file://)
#   put256m PUT of a distinct 256 MiB buffer with curl, beside curl copying it to a local file
# wrk figures are requests/s (median of RUNS); curl figures MB/s (median of RUNS). Ratios are
# seamfs / python, and for the big transfers seamfs / local-file curl as well.
# Note: the load generator shares the cores with the server; numbers taken while other work
# runs on the machine are noisy.
#
# Usage: scripts/bench-hashserver.sh [DURATION_SECONDS (default 5)] [RUNS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
runs=${2:-3}

scripts/setup-system wrk
[ -x .venv-hashserver/bin/hashserver ] || { echo "bench-hashserver: .venv-hashserver is missing: run scripts/setup-python" >&2; exit 1; }
cargo build --release --bin seamfs >&2
seamfs=target/release/seamfs

work=$(mktemp -d -p "${TMPDIR:-/var/tmp}" bench-hashserver.XXXXXX)
cleanup() {
    for pidfile in "$work"/*.pid; do
        [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT

# Start a server on its own directory; prints its port. $1 = name, then the command.
start_server() {
    local name=$1; shift
    mkdir -p "$work/$name"
    echo '{}' > "$work/$name.status"
    "$@" "$work/$name" --writable --port-range 40000 48999 --status-file "$work/$name.status" > "$work/$name.log" 2>&1 &
    echo $! > "$work/$name.pid"
    for _ in $(seq 300); do
        if grep -q '"running"' "$work/$name.status" 2>/dev/null; then
            sed -E 's/.*"port": ([0-9]+).*/\1/' "$work/$name.status"
            return
        fi
        sleep 0.1
    done
    echo "bench-hashserver: $name did not start; its log:" >&2; cat "$work/$name.log" >&2; exit 1
}

py_port=$(start_server python .venv-hashserver/bin/hashserver)
rs_port=$(start_server seamfs "$seamfs" hashserver)

# Test data: 1000 stored 4 KiB buffers (GET), 200000 fresh ones per server for PUT (records
# of 4096 bytes, checksums one per line), and a /has body.
.venv/bin/python - "$work" <<'PY'
import hashlib, json, os, sys
work = sys.argv[1]
def write_set(name, n, salt):
    with open(f"{work}/{name}.bin", "wb") as data, open(f"{work}/{name}.cs", "w") as sums:
        for i in range(n):
            buf = (b"%s %d " % (salt, i)).ljust(4096, b".")
            data.write(buf)
            sums.write(hashlib.sha256(buf).hexdigest() + "\n")
write_set("stored", 1000, b"stored")
write_set("put-python", 200000, b"put-python")
write_set("put-seamfs", 200000, b"put-seamfs")
stored = open(f"{work}/stored.cs").read().split()
missing = [hashlib.sha256(b"missing %d" % i).hexdigest() for i in range(500)]
json.dump(stored[:500] + missing, open(f"{work}/has.json", "w"))
PY

# Store the 1000 GET buffers through each server's own PUT path.
populate() {
    .venv/bin/python - "$1" "$work" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
work = sys.argv[2]
data = open(f"{work}/stored.bin", "rb").read()
for i, cs in enumerate(open(f"{work}/stored.cs").read().split()):
    conn.request("PUT", "/" + cs, data[i * 4096:(i + 1) * 4096])
    resp = conn.getresponse(); resp.read()
    assert resp.status in (200, 201), resp.status
PY
}
populate "$py_port"
populate "$rs_port"

cat > "$work/get.lua" <<'LUA'
local sums = {}
init = function(args)
    for line in io.lines(os.getenv("WORK") .. "/stored.cs") do sums[#sums + 1] = line end
    math.randomseed(os.time() + math.random(1000))
end
request = function()
    return wrk.format("GET", "/" .. sums[math.random(#sums)])
end
LUA
# Each wrk thread PUTs its own part of the fresh buffers, each at most once.
cat > "$work/put.lua" <<'LUA'
local threads = 0
setup = function(thread) thread:set("id", threads); threads = threads + 1 end
local sums, data, next_i, last_i = {}, nil, 0, 0
init = function(args)
    local prefix = os.getenv("WORK") .. "/put-" .. os.getenv("SERVER")
    for line in io.lines(prefix .. ".cs") do sums[#sums + 1] = line end
    local f = io.open(prefix .. ".bin", "rb"); data = f:read("*a"); f:close()
    -- distinct content per run: run r of R, thread id of 2 gets its own slice
    local run, runs = tonumber(os.getenv("RUN")), tonumber(os.getenv("RUNS"))
    local per = math.floor(#sums / (2 * runs))
    next_i = ((run - 1) * 2 + id) * per + 1; last_i = next_i + per - 1
end
request = function()
    local i = next_i
    if i > last_i then i = last_i end
    next_i = next_i + 1
    return wrk.format("PUT", "/" .. sums[i], nil, string.sub(data, (i - 1) * 4096 + 1, i * 4096))
end
LUA
cat > "$work/has.lua" <<'LUA'
local body
init = function(args)
    local f = io.open(os.getenv("WORK") .. "/has.json", "rb"); body = f:read("*a"); f:close()
end
request = function()
    return wrk.format("GET", "/has", {["Content-Type"] = "application/json"}, body)
end
LUA
cat > "$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status
    io.write(string.format("RESULT %.1f %d\n", summary.requests / (summary.duration / 1e6), errors))
end
LUA
for s in get put has; do cat "$work/report.lua" >> "$work/$s.lua"; done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One wrk measurement: prints "rps errors". $1 script, $2 server name, $3 port, $4 duration.
run_wrk() {
    # A generous --timeout: the Python server takes seconds per answer under this load, and a
    # request wrk gives up on would count as zero.
    WORK=$work SERVER=$2 RUN=${RUN:-1} RUNS=${RUNS:-1} wrk -t2 -c32 -d"${4}s" --timeout 60s -s "$work/$1.lua" "http://127.0.0.1:$3/" \
        | awk '/^RESULT/ {print $2, $3}'
}

printf "%-8s %14s %14s %8s   %s\n" bench python seamfs ratio "(requests/s, median of $runs; errors)"
for bench in get4k has put4k; do
    script=${bench%4k}
    declare -A rps=()
    errs=""
    for server in python seamfs; do
        port=$py_port; [ "$server" = seamfs ] && port=$rs_port
        d=$duration; [ "$bench" = put4k ] && d=2   # stay within the fresh buffers
        : > "$work/runs"
        for r in $(seq "$runs"); do
            RUN=$r RUNS=$runs run_wrk "$script" "$server" "$port" "$d" >> "$work/runs"
        done
        rps[$server]=$(cut -d' ' -f1 "$work/runs" | median)
        errs="$errs $server:$(awk '{s+=$2} END {print s}' "$work/runs")"
    done
    awk -v n="$bench" -v p="${rps[python]}" -v s="${rps[seamfs]}" -v e="$errs" \
        'BEGIN {printf "%-8s %14.0f %14.0f %7.1fx  %s\n", n, p, s, s / p, e}'
done

# Big transfers with curl. MB/s of one transfer; median of RUNS.
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b / t / 1e6}'; }
timed_curl() { curl -s -o "$2" -w '%{time_total}\n' "${@:3}" "$1"; }

big="$work/big.bin"
head -c 1G /dev/urandom > "$big"
big_cs=$(sha256sum "$big" | cut -c1-64)
for server in python seamfs; do
    mkdir -p "$work/$server/${big_cs:0:2}"
    cp "$big" "$work/$server/${big_cs:0:2}/$big_cs"
    chmod 444 "$work/$server/${big_cs:0:2}/$big_cs"
done
size=$((1 << 30))
declare -A get1g=()
for what in file python seamfs; do
    : > "$work/runs"
    for _ in $(seq "$runs"); do
        case $what in
            file) url="file://$big" ;;
            python) url="http://127.0.0.1:$py_port/$big_cs" ;;
            seamfs) url="http://127.0.0.1:$rs_port/$big_cs" ;;
        esac
        mbps "$size" "$(timed_curl "$url" /dev/null)" >> "$work/runs"
    done
    get1g[$what]=$(median < "$work/runs")
done
rm -f "$big"

declare -A put256=()
msize=$((256 << 20))
for what in file python seamfs; do
    : > "$work/runs"
    for _ in $(seq "$runs"); do
        src="$work/put.bin"
        head -c 256M /dev/urandom > "$src"   # distinct content every run
        cs=$(sha256sum "$src" | cut -c1-64)
        case $what in
            file) t=$(timed_curl "file://$src" "$work/copy.bin"); rm -f "$work/copy.bin" ;;
            python) t=$(timed_curl "http://127.0.0.1:$py_port/$cs" /dev/null -T "$src") ;;
            seamfs) t=$(timed_curl "http://127.0.0.1:$rs_port/$cs" /dev/null -T "$src") ;;
        esac
        mbps "$msize" "$t" >> "$work/runs"
        rm -f "$src"
    done
    put256[$what]=$(median < "$work/runs")
done

echo
printf "%-8s %10s %10s %10s %10s %12s   %s\n" bench file python seamfs "vs python" "vs file" "(MB/s, median of $runs)"
for bench in get1g put256m; do
    if [ "$bench" = get1g ]; then f=${get1g[file]}; p=${get1g[python]}; s=${get1g[seamfs]}
    else f=${put256[file]}; p=${put256[python]}; s=${put256[seamfs]}; fi
    awk -v n="$bench" -v f="$f" -v p="$p" -v s="$s" \
        'BEGIN {printf "%-8s %10.0f %10.0f %10.0f %9.1fx %11.2fx\n", n, f, p, s, s / p, s / f}'
done
