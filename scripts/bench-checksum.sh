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

# median_of NAME COMMAND: run hyperfine, print the median in seconds.
median_of() {
    local json="$work/$1.json"
    hyperfine --style none --warmup 1 --runs "$runs" --export-json "$json" "$2" > /dev/null
    "$py/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$json"
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
ours, openssl, sha256sum, python, ours_index, python_index = map(float, sys.argv[2:])
gib = 1.0
print(f"\nmedians of {runs} runs (page cache warm); speed ratio = peer time / seamfs time (>1: seamfs faster)")
print(f"{'1 GiB file':<34}{'seconds':>9}{'GiB/s':>8}{'ratio':>8}")
print(f"{'seamfs checksum':<34}{ours:>9.3f}{gib/ours:>8.2f}{'':>8}")
for name, t in [("openssl dgst -sha256", openssl), ("sha256sum", sha256sum), ("Python seamless-checksum", python)]:
    print(f"{name:<34}{t:>9.3f}{gib/t:>8.2f}{t/ours:>8.2f}")
print(f"\n{'10 000 small files':<34}{'seconds':>9}{'files/s':>8}{'ratio':>8}")
print(f"{'seamfs checksum-index':<34}{ours_index:>9.3f}{10000/ours_index:>8.0f}{'':>8}")
print(f"{'Python seamless-checksum-index':<34}{python_index:>9.3f}{10000/python_index:>8.0f}{python_index/ours_index:>8.2f}")
PY
