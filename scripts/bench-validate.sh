#!/usr/bin/env bash
# Python validation throughput: seamfs's `python` validator (release build) beside CPython
# 3.11's `ast.parse` (what seamless-core runs), on the same files in the same run: every .py
# file of the .venv interpreter's stdlib, as seamless sees it (strict UTF-8, trailing LFs
# removed). Median of RUNS runs each (default 5). Also shows that both accept the same count.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PY=.venv/bin/python
[ -x "$PY" ] || { echo "bench-validate: $PY is missing; run scripts/setup-python first" >&2; exit 1; }
STDLIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")

cargo build --release --example bench_validate -q
read -r ours_s mb files ours_ok < <(target/release/examples/bench_validate "$STDLIB" "$RUNS")

read -r theirs_s theirs_files theirs_ok < <("$PY" - "$STDLIB" "$RUNS" <<'PYEOF'
import ast, os, statistics, sys, time
root, runs = sys.argv[1], int(sys.argv[2])
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if f.endswith(".py") and "site-packages" not in os.path.join(d, f))
texts = []
for p in paths:
    try:
        texts.append(open(p, "rb").read().decode("utf-8").rstrip("\n"))
    except UnicodeDecodeError:
        pass
def accepts(t):
    try:
        ast.parse(t, filename="value_conversion")
        return True
    except Exception:
        return False
times = []
for _ in range(runs):
    start = time.perf_counter()
    ok = sum(accepts(t) for t in texts)
    times.append(time.perf_counter() - start)
print(f"{statistics.median(times):.4f} {len(texts)} {ok}")
PYEOF
)

awk -v mb="$mb" -v o="$ours_s" -v t="$theirs_s" -v f="$files" -v oo="$ours_ok" -v to="$theirs_ok" 'BEGIN {
    printf "python validation, CPython 3.11 stdlib: %d files, %.1f MB, median of runs\n", f, mb
    printf "  seamfs python::validate   %7.3f s  %6.1f MB/s  accepted %d\n", o, mb / o, oo
    printf "  CPython ast.parse         %7.3f s  %6.1f MB/s  accepted %d\n", t, mb / t, to
    printf "  ratio (seamfs / CPython)  %.1fx\n", t / o
}'
[ "$ours_ok" = "$theirs_ok" ] || { echo "bench-validate: accepted counts differ" >&2; exit 1; }
