#!/usr/bin/env bash
# Benchmark `seamfs hashserver` against the Python hashserver 1.1.0, in one run, same machine,
# same load, each on its own buffer directory:
#   get4k   GET of 1000 distinct stored 4 KiB buffers, wrk, 32 keep-alive connections
#   has     GET /has with 1000 checksums (half stored), wrk, 8 connections
#   put4k   PUT of distinct 4 KiB buffers (never stored before: fresh ones every run), wrk, 8
#           connections; a run that runs out of fresh buffers says so ("REPEATS")
#   get1g   first GET of a distinct 1 GiB buffer per run (put in place as another writer would,
#           so the server re-hashes it before sending, as the spec demands), curl
#   get1g+  GET of that buffer again (seamfs remembers files it verified: no re-hash), curl
#   put256m PUT of a distinct 256 MiB buffer per run, curl
# beside curl copying the same file from/to a local file (file://), and for GETs beside curl of a
# minimal server that sends the same file with sendfile(2): the loopback ceiling of any HTTP
# server on this machine (file:// involves no socket at all).
# wrk figures are requests/s (median of RUNS); curl figures MB/s (median of RUNS). Ratios are
# seamfs / python, and for the big transfers seamfs / local-file curl as well.
#
# The Python server answers a /has or a PUT by gathering many thread-pool file operations, so
# concurrent requests interleave and all finish late: with a short wrk run it completes none
# (wrk counts only what completes within the run; --timeout does not extend it). So each wrk
# row's duration is stretched, per server, to at least 20 request latencies x connections (the
# latency probed with one request first), capped at 120 s; the durations are printed.
# Note: the load generator shares the cores with the server; numbers taken while other work
# runs on the machine are noisy.
#
# Usage: scripts/bench-hashserver.sh [DURATION_SECONDS (default 5)] [RUNS (default 3)]
#   BIG_GET=1G BIG_PUT=256M: sizes of the big transfers (smaller for a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
runs=${2:-3}
big_get=${BIG_GET:-1G}
big_put=${BIG_PUT:-256M}

scripts/setup-system wrk curl
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

# Test data: 1000 stored 4 KiB buffers (GET) and a /has body. Buffer i of a set named SALT is
# "SALT i " padded with dots to 4096 bytes (put.lua builds the PUT bodies the same way).
.venv/bin/python - "$work" <<'PY'
import hashlib, json, sys
work = sys.argv[1]
with open(f"{work}/stored.bin", "wb") as data, open(f"{work}/stored.cs", "w") as sums:
    for i in range(1000):
        buf = (b"stored %d " % i).ljust(4096, b".")
        data.write(buf)
        sums.write(hashlib.sha256(buf).hexdigest() + "\n")
stored = open(f"{work}/stored.cs").read().split()
missing = [hashlib.sha256(b"missing %d" % i).hexdigest() for i in range(500)]
json.dump(stored[:500] + missing, open(f"{work}/has.json", "w"))
PY

# Fresh PUT buffers for one wrk run: checksums of COUNT buffers of the set SALT into FILE.
fresh_sums() {
    .venv/bin/python - "$1" "$2" "$3" <<'PY'
import hashlib, sys
salt, count, path = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as sums:
    for i in range(count):
        sums.write(hashlib.sha256((b"%s %d " % (salt, i)).ljust(4096, b".")).hexdigest() + "\n")
PY
}

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
# Each wrk thread PUTs its own half of the run's fresh buffers, each at most once; past them
# the last one repeats (a 201 that reads no body), counted as REPEATS.
cat > "$work/put.lua" <<'LUA'
local threads = {}
setup = function(thread) thread:set("id", #threads); threads[#threads + 1] = thread end
local sums, salt, next_i, last_i = {}, nil, 0, 0
repeats = 0
init = function(args)
    salt = os.getenv("SALT")
    for line in io.lines(os.getenv("SUMS")) do sums[#sums + 1] = line end
    local per = math.floor(#sums / 2)
    next_i = id * per + 1; last_i = next_i + per - 1
end
request = function()
    local i = next_i
    if i > last_i then i = last_i; repeats = repeats + 1 end
    next_i = next_i + 1
    local head = string.format("%s %d ", salt, i - 1)
    return wrk.format("PUT", "/" .. sums[i], nil, head .. string.rep(".", 4096 - #head))
end
extra_report = function()
    local n = 0
    for _, t in ipairs(threads) do n = n + t:get("repeats") end
    if n > 0 then io.write(string.format("REPEATS %d\n", n)) end
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
    if extra_report then extra_report() end
end
LUA
for s in get put has; do cat "$work/report.lua" >> "$work/$s.lua"; done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Seconds one request of a wrk row takes on an idle server (curl): $1 bench, $2 port.
probe_latency() {
    local url="http://127.0.0.1:$2"
    case $1 in
        get4k) curl -s -o /dev/null -w '%{time_total}\n' "$url/$(head -1 "$work/stored.cs")" ;;
        has) curl -s -o /dev/null -w '%{time_total}\n' -X GET -H 'Content-Type: application/json' \
                --data-binary @"$work/has.json" "$url/has" ;;
        put4k) local body="$work/probe.bin"
               printf 'probe %s ' "$RANDOM$RANDOM" > "$body"; head -c 4000 /dev/zero | tr '\0' . >> "$body"
               curl -s -o /dev/null -w '%{time_total}\n' -T "$body" "$url/$(sha256sum "$body" | cut -c1-64)" ;;
    esac
}

# One wrk measurement: prints "rps errors repeats". $1 bench, $2 server, $3 port, $4 duration,
# $5 connections, $6 run number.
run_wrk() {
    local script=${1%4k} sums="" salt=""
    if [ "$1" = put4k ]; then
        salt="put-$2-$6"
        sums="$work/$salt.cs"
        # Enough fresh buffers for a generous guess of the rate (repeats are reported).
        local rate=2000; [ "$2" = seamfs ] && rate=40000
        fresh_sums "$salt" "$(( $4 * rate ))" "$sums"
    fi
    WORK=$work SALT=$salt SUMS=$sums wrk -t2 -c"$5" -d"${4}s" --timeout 120s -s "$work/$script.lua" "http://127.0.0.1:$3/" \
        | awk '/^RESULT/ {r=$2; e=$3} /^REPEATS/ {p=$2} END {print r, e, p+0}'
    rm -f "$sums"
}

printf "%-8s %14s %14s %8s   %s\n" bench python seamfs ratio "(requests/s, median of $runs; durations, errors, repeats)"
for bench in get4k has put4k; do
    conns=8; [ "$bench" = get4k ] && conns=32
    declare -A rps=()
    notes=""
    for server in python seamfs; do
        port=$py_port; [ "$server" = seamfs ] && port=$rs_port
        latency=$(probe_latency "$bench" "$port")
        d=$(awk -v d="$duration" -v l="$latency" -v c="$conns" \
            'BEGIN {x = 20 * l * c; if (x < d) x = d; if (x > 120) x = 120; printf "%d", x + 0.999}')
        : > "$work/runs"
        for r in $(seq "$runs"); do
            run_wrk "$bench" "$server" "$port" "$d" "$conns" "$r" >> "$work/runs"
        done
        rps[$server]=$(cut -d' ' -f1 "$work/runs" | median)
        notes="$notes $server:${d}s,$(awk '{e+=$2; p+=$3} END {print e "," p}' "$work/runs")"
    done
    awk -v n="$bench" -v p="${rps[python]}" -v s="${rps[seamfs]}" -v e="$notes c$conns" \
        'BEGIN {printf "%-8s %14.1f %14.1f %7.1fx  %s\n", n, p, s, (p > 0 ? s / p : 0), e}'
done

# Big transfers with curl. MB/s of one transfer; median of RUNS.
bytes_of() { numfmt --from=iec "$1"; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f\n", b / t / 1e6}'; }
timed_curl() { curl -sf -o "$2" -w '%{time_total}\n' "${@:3}" "$1"; }
url_of() { case $1 in python) echo "http://127.0.0.1:$py_port/$2" ;; seamfs) echo "http://127.0.0.1:$rs_port/$2" ;; esac; }

# The loopback ceiling of a big GET: the least any HTTP server can do, an HTTP/1.1 head and then
# sendfile(2) of the file (no user-space copy at all), Python stdlib, serving $work/big.bin.
sendfile_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$sendfile_port" "$work/big.bin" > "$work/sendfile.log" 2>&1 <<'PY' &
import os, socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    with conn, open(sys.argv[2], "rb") as f:
        conn.recv(65536)
        size = os.fstat(f.fileno()).st_size
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        conn.sendfile(f)
PY
echo $! > "$work/sendfile.pid"

# GET: a distinct buffer every run, placed into both directories as another writer would.
gsize=$(bytes_of "$big_get")
for what in file sendfile python seamfs; do : > "$work/get-$what"; : > "$work/again-$what"; done
for _ in $(seq "$runs"); do
    big="$work/big.bin"
    head -c "$gsize" /dev/urandom > "$big"
    cs=$(sha256sum "$big" | cut -c1-64)
    for server in python seamfs; do
        mkdir -p "$work/$server/${cs:0:2}"
        cp "$big" "$work/$server/${cs:0:2}/$cs"
        chmod 444 "$work/$server/${cs:0:2}/$cs"
    done
    mbps "$gsize" "$(timed_curl "file://$big" /dev/null)" >> "$work/get-file"
    mbps "$gsize" "$(timed_curl "file://$big" /dev/null)" >> "$work/again-file"
    mbps "$gsize" "$(timed_curl "http://127.0.0.1:$sendfile_port/" /dev/null)" >> "$work/get-sendfile"
    cp "$work/get-sendfile" "$work/again-sendfile"
    for server in python seamfs; do
        mbps "$gsize" "$(timed_curl "$(url_of $server "$cs")" /dev/null)" >> "$work/get-$server"
        mbps "$gsize" "$(timed_curl "$(url_of $server "$cs")" /dev/null)" >> "$work/again-$server"
        rm -f "$work/$server/${cs:0:2}/$cs"
    done
    rm -f "$big"
done

# PUT: a distinct buffer every run.
psize=$(bytes_of "$big_put")
for what in file sendfile python seamfs; do : > "$work/put-$what"; done
for _ in $(seq "$runs"); do
    src="$work/put.bin"
    head -c "$psize" /dev/urandom > "$src"
    cs=$(sha256sum "$src" | cut -c1-64)
    mbps "$psize" "$(timed_curl "file://$src" "$work/copy.bin")" >> "$work/put-file"
    rm -f "$work/copy.bin"
    for server in python seamfs; do
        mbps "$psize" "$(timed_curl "$(url_of $server "$cs")" /dev/null -T "$src")" >> "$work/put-$server"
        rm -f "$work/$server/${cs:0:2}/$cs"
    done
    rm -f "$src"
done

echo
printf "%-8s %10s %10s %10s %10s %10s %12s %12s   %s\n" bench file sendfile python seamfs "vs python" "vs file" "vs sendfile" "(MB/s, median of $runs; $big_get GET, $big_put PUT)"
for bench in get again put; do
    f=$(median < "$work/$bench-file"); p=$(median < "$work/$bench-python"); s=$(median < "$work/$bench-seamfs")
    l=$(median < "$work/$bench-sendfile")
    name=$bench; [ "$bench" = get ] && name=get1g; [ "$bench" = again ] && name=get1g+; [ "$bench" = put ] && name=put256m
    awk -v n="$name" -v f="$f" -v l="${l:-0}" -v p="$p" -v s="$s" 'BEGIN {
        ls = (l > 0) ? sprintf("%10.0f", l) : sprintf("%10s", "-")
        rl = (l > 0) ? sprintf("%11.2fx", s / l) : sprintf("%12s", "-")
        printf "%-8s %10.0f %s %10.0f %10.0f %9.1fx %11.2fx %s\n", n, f, ls, p, s, s / p, s / f, rl }'
done
