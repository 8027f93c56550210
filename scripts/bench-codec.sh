#!/usr/bin/env bash
# Benchmark of the cell-type codecs against seamless-core, measured in the same run (hyperfine
# medians). Each workload is one process on each side, reading a file and writing the result to
# /dev/null; the Python side includes its interpreter start and imports (measured separately as
# "python startup" so the difference can be read off).
#   encode plain   ~40 MB JSON value -> plain buffer   (seamfs encode | serialize_sync(json.load(f), "plain"))
#   encode mixed   same value        -> mixed buffer   (Python json writer)
#   decode plain   plain buffer      -> value -> JSON  (seamfs decode --json | get_value("plain") + json.dumps)
#   binary         64 MB .npy        -> binary buffer  (.npy read + write)
# Usage: scripts/bench-codec.sh [RUNS]   (default 5, at least 3)
# Before/after: BASELINE=/path/to/older/seamfs scripts/bench-codec.sh also times that binary on the
# same inputs, right after this checkout's binary on each workload, and prints the ratio
# baseline time / this checkout's time (>= 1: not slower).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$runs" -ge 3 ] || { echo "bench-codec: use at least 3 runs" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "bench-codec: hyperfine is missing (scripts/setup-system hyperfine)" >&2; exit 1; }
py=.venv/bin/python
[ -x "$py" ] || { echo "bench-codec: .venv is missing; run scripts/setup-python" >&2; exit 1; }

cargo build --release --bin seamfs
seamfs=$PWD/target/release/seamfs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "preparing a ~40 MB JSON value and a 64 MB .npy in $work ..."
"$py" - "$work" <<'PY'
import json, random, sys
import numpy as np
from seamless.checksum.serialize import serialize_sync
work = sys.argv[1]
random.seed(1)
words = ["alpha", "béta", "gamma", "δέλτα", "epsilon", "zeta\n", "eta\"", "😀"]
value = [
    {
        "id": i,
        "name": " ".join(random.choice(words) for _ in range(4)),
        "x": random.random() * 10 ** random.randint(-8, 20),
        "flags": [random.random() < 0.5 for _ in range(5)],
        "nested": {"a": random.randint(-2**40, 2**40), "b": None, "c": [1.5, "two", {"d": 3}]},
    }
    for i in range(150_000)
]
with open(f"{work}/value.json", "w") as f:
    json.dump(value, f)
with open(f"{work}/value.plain", "wb") as f:
    f.write(serialize_sync(value, "plain", use_cache=False))
np.save(f"{work}/array.npy", np.random.default_rng(1).random((2000, 4000)))
PY
ls -la "$work"

# median_of NAME COMMAND: run hyperfine, print the median in seconds.
median_of() {
    local json="$work/$1.json"
    hyperfine --style none --warmup 1 --runs "$runs" --export-json "$json" "$2" > /dev/null
    "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$json"
}

# seamfs_of NAME ARGS: the median of this checkout's seamfs with ARGS, then (with BASELINE) the
# baseline binary's, measured right after it.
seamfs_of() {
    median_of "ours_$1" "$seamfs $2 > /dev/null"
    [ -z "${BASELINE:-}" ] || median_of "base_$1" "$BASELINE $2 > /dev/null"
}
[ -z "${BASELINE:-}" ] || [ -x "$BASELINE" ] || { echo "bench-codec: BASELINE=$BASELINE is not an executable" >&2; exit 1; }
pyrun="$PWD/$py -c"
imports="import sys, json, numpy as np; from seamless import Buffer; from seamless.checksum.serialize import serialize_sync"
startup=$(median_of startup "$pyrun '$imports'")
mapfile -t t < <(seamfs_of plain "encode --celltype plain $work/value.json"); ours_plain=${t[0]} base_plain=${t[1]:-}
py_plain=$(median_of py_plain "$pyrun '$imports; sys.stdout.buffer.write(serialize_sync(json.load(open(\"$work/value.json\")), \"plain\"))' > /dev/null")
mapfile -t t < <(seamfs_of mixed "encode --celltype mixed $work/value.json"); ours_mixed=${t[0]} base_mixed=${t[1]:-}
py_mixed=$(median_of py_mixed "$pyrun '$imports; sys.stdout.buffer.write(serialize_sync(json.load(open(\"$work/value.json\")), \"mixed\"))' > /dev/null")
mapfile -t t < <(seamfs_of decode "decode --celltype plain --json $work/value.plain"); ours_decode=${t[0]} base_decode=${t[1]:-}
py_decode=$(median_of py_decode "$pyrun '$imports; print(json.dumps(Buffer(open(\"$work/value.plain\", \"rb\").read()).get_value(\"plain\"), indent=2))' > /dev/null")
mapfile -t t < <(seamfs_of binary "encode --celltype binary $work/array.npy"); ours_binary=${t[0]} base_binary=${t[1]:-}
py_binary=$(median_of py_binary "$pyrun '$imports; sys.stdout.buffer.write(serialize_sync(np.load(\"$work/array.npy\"), \"binary\"))' > /dev/null")

"$py" - "$runs" "$startup" "$ours_plain" "$py_plain" "$ours_mixed" "$py_mixed" "$ours_decode" "$py_decode" "$ours_binary" "$py_binary" \
    $base_plain $base_mixed $base_decode $base_binary <<'PY'
import sys
runs = sys.argv[1]
startup, *times = map(float, sys.argv[2:])
times, baseline = times[:8], times[8:]
print(f"\nmedians of {runs} runs (page cache warm); ratio = Python time / seamfs time (>1: seamfs faster)")
print(f"python startup with imports: {startup:.3f} s (included in the Python column)")
print(f"{'workload':<16}{'seamfs s':>10}{'Python s':>10}{'ratio':>8}")
names = ["encode plain", "encode mixed", "decode plain", "binary"]
for name, ours, theirs in zip(names, times[0::2], times[1::2]):
    print(f"{name:<16}{ours:>10.3f}{theirs:>10.3f}{theirs / ours:>8.2f}")
if baseline:
    print("\nbefore/after; ratio = BASELINE time / this checkout's time (>=1: not slower)")
    print(f"{'workload':<16}{'seamfs s':>10}{'baseline s':>12}{'ratio':>8}")
    for name, ours, base in zip(names, times[0::2], baseline):
        print(f"{name:<16}{ours:>10.3f}{base:>12.3f}{base / ours:>8.2f}")
PY
