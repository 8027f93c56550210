#!/usr/bin/env bash
# Benchmark of the checksum tools against their peers, measured in the same run (hyperfine medians):
#   seamfs checksum        vs openssl dgst -sha256, sha256sum, Python seamless-checksum  (1 GiB file)
#   seamfs checksum-index  vs Python seamless-checksum-index                          (10 000 small files)
# Files are read from the page cache (one warm-up run each), so this measures hashing and walking,
# not the disk. Usage: scripts/bench-checksum.sh [RUNS]   (default 5, at least 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$runs" -ge 3 ] || { echo "bench-checksum: use at least 3 runs" >&2; exit 1; }
for tool in hyperfine openssl sha256sum; do
    command -v "$tool" >/dev/null || { echo "bench-checksum: $tool is missing (scripts/setup-system $tool)" >&2; exit 1; }
done
py=.venv/bin
[ -x "$py/seamless-checksum" ] || { echo "bench-checksum: $py is missing; run scripts/setup-python" >&2; exit 1; }

cargo build --release --bin seamfs
seamfs=$PWD/target/release/seamfs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "preparing a 1 GiB file and a 10 000-file tree in $work ..."
head -c $((1 << 30)) /dev/urandom > "$work/big.bin"
"$py/python" - "$work/tree" <<'PY'
import os, sys
top = sys.argv[1]
for d in range(100):
    sub = os.path.join(top, f"dir{d:03d}")
    os.makedirs(sub)
    for f in range(100):
        with open(os.path.join(sub, f"file{f:03d}.txt"), "w") as fh:
            fh.write(f"small file {d} {f}\n" * (1 + f % 7))
PY
cat "$work/big.bin" > /dev/null

# median_of NAME COMMAND: run hyperfine (no shell), print "median_wall_seconds,mean_cpu_seconds".
# CPU time (user + system; hyperfine reports its mean) is the steadier figure on a busy machine.
median_of() {
    local json="$work/$1.json"
    hyperfine -N --style none --warmup 1 --runs "$runs" --export-json "$json" "$2" > /dev/null
    "$py/python" - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"{r['median']},{r['user'] + r['system']}")
PY
}

big="$work/big.bin"
ours=$(median_of ours "$seamfs checksum $big")
openssl_t=$(median_of openssl "openssl dgst -sha256 $big")
sha256sum_t=$(median_of sha256sum "sha256sum $big")
python_t=$(median_of python "$py/seamless-checksum $big")
ours_index=$(median_of ours_index "$seamfs checksum-index $work/tree")
python_index=$(median_of python_index "$py/seamless-checksum-index $work/tree")

"$py/python" - "$runs" "$ours" "$openssl_t" "$sha256sum_t" "$python_t" "$ours_index" "$python_index" <<'PY'
import sys
runs = sys.argv[1]
ours, openssl, sha256sum, python, ours_index, python_index = (
    tuple(map(float, a.split(","))) for a in sys.argv[2:]
)

def table(title, unit, amount, mine, peers):
    print(f"\n{title:<32}{'wall s':>8}{unit:>9}{'ratio':>7}{'cpu s':>8}{'ratio':>7}")
    print(f"{mine[0]:<32}{mine[1][0]:>8.3f}{amount / mine[1][0]:>9.2f}{'':>7}{mine[1][1]:>8.3f}")
    for name, (wall, cpu) in peers:
        print(f"{name:<32}{wall:>8.3f}{amount / wall:>9.2f}{wall / mine[1][0]:>7.2f}"
              f"{cpu:>8.3f}{cpu / mine[1][1]:>7.2f}")

print(f"{runs} runs, page cache warm: median wall time, mean CPU time (user + system);")
print("ratio = peer / seamfs (above 1: seamfs is faster)")
table("1 GiB file", "GiB/s", 1.0, ("seamfs checksum", ours),
      [("openssl dgst -sha256", openssl), ("sha256sum", sha256sum),
       ("Python seamless-checksum", python)])
table("10 000 small files", "kfile/s", 10.0, ("seamfs checksum-index", ours_index),
      [("Python seamless-checksum-index", python_index)])
PY
