#!/usr/bin/env bash
# Benchmark offloading and reloading a 1 GiB float64 array (np.arange(2**27)) with seamfs and
# with GSEGUtils 0.6.0, in one run, same machine. Every phase runs in its own process, so the
# peak RSS (VmHWM) printed is that phase's own (it includes the 1 GiB array the phase starts with).
#
#   named store  seamfs: NamedArrayStore::put (stream .npy + sidecar) / get (map .npy) + sum
#                GSEGUtils: add_data_to_store + offload(pickle_container=True) / store[k] + sum
#   memmap tier  seamfs: OffloadEntry (caching on) + offload / load + sum
#                GSEGUtils: DiskBackedNDArray(enable_caching=True) + offload / load + sum
#
# Reloads are measured warm (the file in the page cache) and cold (evicted with
# posix_fadvise(DONTNEED) first). RUNS repetitions; medians printed with the ratio.
#
# Usage: scripts/bench-offload.sh [RUNS (default 3)] [SIZE_BYTES (default 1073741824)]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
size=${2:-1073741824}

python=.venv-gseg/bin/python
[ -x "$python" ] || { echo "bench-offload: $python is missing: run scripts/setup-python" >&2; exit 1; }
cargo build --release --example bench_offload >&2
ours=target/release/examples/bench_offload

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/gseg.py" <<'PY'
import os, sys, time
from pathlib import Path
import numpy as np
from GSEGUtils.lazy_disk_cache import DiskBackedNDArray, DiskBackedStore, LazyDiskCacheConfig

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

def report(phase, t0, check=0.0):
    print(f"{phase} seconds={time.perf_counter() - t0:.4f} peak_rss_kib={peak_kib()} check={check}", flush=True)

phase, d = sys.argv[1], Path(sys.argv[2])
config = LazyDiskCacheConfig(enable_caching=True, cache_path=d, purge_disk_on_gc=True, automatic_offloading=False)
if phase == "offload":
    arr = np.arange(int(sys.argv[3]) // 8, dtype=np.float64)
    store = DiskBackedStore(config=config, factory=DiskBackedNDArray)
    t0 = time.perf_counter()
    store.add_data_to_store("big", arr)
    store.offload("big", pickle_container=True)
    report("offload", t0)
elif phase == "reload":
    store = DiskBackedStore(config=config, factory=DiskBackedNDArray)
    t0 = time.perf_counter()
    entry = store["big"]
    report("reload", t0, float(entry.data.sum()))
elif phase == "entry":
    arr = np.arange(int(sys.argv[3]) // 8, dtype=np.float64)
    t0 = time.perf_counter()
    e = DiskBackedNDArray(arr, enable_caching=True, cache_path=d / "entry.npy", purge_disk_on_gc=True)
    del arr
    e.offload()
    report("entry-offload", t0)
    t0 = time.perf_counter()
    e.load("r")
    report("entry-reload", t0, float(e.data.sum()))
PY

# Evict a file's pages from the page cache (fsync first so they are clean).
evict() {
    "$python" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"
}

# run IMPL PHASE DIR [SIZE]: one process; appends "IMPL PHASE seconds kib" lines to results.
run() {
    local impl=$1; shift
    local out
    if [ "$impl" = seamfs ]; then out=$("$ours" "$@"); else out=$("$python" "$work/gseg.py" "$@"); fi
    echo "$out" | while read -r phase secs kib check; do
        echo "$impl $phase ${secs#seconds=} ${kib#peak_rss_kib=} ${check#check=}"
    done >> "$work/results"
}

for r in $(seq "$runs"); do
    echo "run $r/$runs" >&2
    for impl in seamfs gseg; do
        dir="$work/$impl-$r"
        mkdir -p "$dir"
        run "$impl" offload "$dir" "$size"
        run "$impl" reload "$dir"
        evict "$dir/big.npy"
        run "$impl" reload "$dir"
        sed -i '$ s/ reload / reload-cold /' "$work/results"   # that last reload was the cold one
        run "$impl" entry "$dir" "$size"
        rm -rf "$dir"
    done
done

"$python" - "$work/results" "$size" <<'PY'
import statistics, sys
from collections import defaultdict
path, size = sys.argv[1], int(sys.argv[2])
rows = defaultdict(lambda: defaultdict(list))
checks = set()
for line in open(path):
    impl, phase, secs, kib, check = line.split()
    rows[phase][impl].append((float(secs), int(kib)))
    if phase.startswith("reload") or phase == "entry-reload":
        checks.add(float(check))
assert len(checks) == 1, f"the implementations summed different data: {checks}"
gib = 1024 ** 3
print(f"array: float64, {size / gib:.2f} GiB; medians of {len(rows['offload']['seamfs'])} runs; peak RSS = VmHWM of the phase's process")
print(f"{'phase':<14} {'seamfs s':>9} {'GSEG s':>9} {'speedup':>8}   {'seamfs RSS':>10} {'GSEG RSS':>9}  {'seamfs RSS/array':>16}")
for phase in ["offload", "reload", "reload-cold", "entry-offload", "entry-reload"]:
    ours = rows[phase]["seamfs"]; theirs = rows[phase]["gseg"]
    s_ours = statistics.median(t for t, _ in ours); s_theirs = statistics.median(t for t, _ in theirs)
    r_ours = statistics.median(k for _, k in ours) * 1024; r_theirs = statistics.median(k for _, k in theirs) * 1024
    print(f"{phase:<14} {s_ours:>9.3f} {s_theirs:>9.3f} {s_theirs / s_ours:>7.1f}x   {r_ours / gib:>8.2f} G {r_theirs / gib:>7.2f} G  {r_ours / size:>15.2f}x")
print("entry-reload RSS is the peak of the whole entry process (offload included).")
PY
