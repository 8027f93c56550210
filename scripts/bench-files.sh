#!/usr/bin/env bash
# Benchmark of the write and small-file paths of the mount, each figure beside native ext4 and
# beside the minimal passthrough FUSE filesystem (examples/passthrough.rs: the FUSE ceiling, with
# seamfs's session settings) in the same run; medians of RUNS runs (default 3), distinct content
# per run:
#   1. tar x of 10 000 files of 4 KiB (100 directories of 100);
#   2. open + read + close of those 10 000 files, page cache warm (one untimed pass first);
#   3. write 1 GiB + read its checksum: cp + cat F.CHECKSUM, against cp + openssl dgst -sha256;
#   4. the same 1 GiB written again under another name (content already stored);
#   5. a 1-byte pwrite into the middle of that 1 GiB file + close;
#   6. a 1-byte pwrite at offset 4 GiB into a 4 KiB file + close;
#   7. truncate -s 4G of a 4 KiB file (open + ftruncate + close).
# Rows 5-7 check afterwards (untimed) that F.CHECKSUM is the SHA-256 of the native twin.
# Ratios are times: seamfs / native and seamfs / passthrough (lower is better, 1 = as fast).
# Needs root (drop_caches, FUSE). Usage: [RUNS=3] [ROWS=1,2,...] scripts/bench-files.sh [WORKDIR]
# ROWS picks the rows to measure and print (default all); rows 3-5 share their setup, as do 6-7.
# SEAMFS=path/to/seamfs measures another build (e.g. main's, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
ROWS=${ROWS:-1,2,3,4,5,6,7}
want() { local r; for r in "$@"; do [[ ",$ROWS," == *",$r,"* ]] && return 0; done; return 1; }
[ "$(id -u)" = 0 ] || { echo "bench-files.sh: run as root (it drops the page cache)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "bench-files.sh: openssl is missing" >&2; exit 1; }
cargo build --release --bin seamfs --example passthrough >&2
BIN=${SEAMFS:-$PWD/target/release/seamfs}
PASSTHROUGH=$PWD/target/release/examples/passthrough
WORK=${1:-$(mktemp -d /var/tmp/seamfs-bench-files.XXXXXX)}
mkdir -p "$WORK"
MNT=$WORK/mnt STORE=$WORK/store NATIVE=$WORK/native PT=$WORK/pt PTSRC=$WORK/pt-source
PID= PTPID=

cleanup() {
    if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true; fi
    if [ -n "$PTPID" ]; then fusermount3 -u "$PT" 2>/dev/null && wait "$PTPID" 2>/dev/null || true; fi
    for m in "$MNT" "$PT"; do
        if mountpoint -q "$m"; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; fi
    done
    if [ -n "$PTPID" ]; then kill "$PTPID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_mount() {
    for _ in $(seq 1 600); do mountpoint -q "$1" && return; sleep 0.05; done
    echo "bench-files.sh: $1 did not mount" >&2; exit 1
}

mkdir -p "$MNT" "$NATIVE" "$PT" "$PTSRC"
RUST_LOG=warn "$BIN" mount "$MNT" --store "$STORE" --no-db &
PID=$!
"$PASSTHROUGH" "$PTSRC" "$PT" &
PTPID=$!
wait_mount "$MNT"
wait_mount "$PT"
# seamfs raises its read-ahead to 1 MiB itself; give the passthrough the same.
echo 1024 > "/sys/class/bdi/$(mountpoint -d "$PT")/read_ahead_kb"

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Milliseconds taken by a command (its output discarded).
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# One result row: label, unit, then the samples of seamfs, native and passthrough as three
# space-separated lists.
row() {
    local o n p
    o=$(median $3) n=$(median $4) p=$(median $5)
    awk -v l="$1" -v u="$2" -v o="$o" -v n="$n" -v p="$p" 'BEGIN {
        rn = (n > 0) ? sprintf("%.2fx", o / n) : "-"
        rp = (p > 0) ? sprintf("%.2fx", o / p) : "-"
        printf "%-40s %11.3f %11.3f %11.3f  %-7s %9s %9s\n", l, o, n, p, u, rn, rp }'
}

# In-process timings (no process start-up in the figure), in the unit the row shows.
PY_READ='import os, sys, time
paths = [os.path.join(sys.argv[1], f"d{i // 100}", f"f{i % 100}") for i in range(10000)]
def once():
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.read(fd, 1 << 16)
        os.close(fd)
once()
t = time.perf_counter()
once()
print((time.perf_counter() - t) / len(paths) * 1e6)'
PY_PWRITE='import os, sys, time
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"x", int(sys.argv[2]))
os.close(fd)
print((time.perf_counter() - t) * 1e3)'
PY_TRUNCATE='import os, sys, time
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_WRONLY)
os.ftruncate(fd, 4 << 30)
os.close(fd)
print((time.perf_counter() - t) * 1e3)'

checksum_of() { sha256sum "$1" | cut -c1-64; }
same_checksum() {
    [ "$(cat "$1.CHECKSUM")" = "$(checksum_of "$2")" ] || { echo "bench-files.sh: $1.CHECKSUM is wrong after $3" >&2; exit 1; }
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %11s %11s %11s  %-7s %9s %9s\n' "measurement (median of $RUNS)" seamfs native passthru unit "/native" "/passthru"

# 1 and 2: many small files. A fresh archive per run (random content).
t_ours=() t_nat=() t_pt=() r_ours=() r_nat=() r_pt=()
want 1 2 && for i in $(seq "$RUNS"); do
    python3 - "$WORK/files$i.tar" <<'EOF'
import io, os, sys, tarfile
with tarfile.open(sys.argv[1], "w") as tar:
    for d in range(100):
        info = tarfile.TarInfo(f"d{d}"); info.type = tarfile.DIRTYPE; info.mode = 0o755
        tar.addfile(info)
        for f in range(100):
            info = tarfile.TarInfo(f"d{d}/f{f}"); info.size = 4096; info.mode = 0o644
            tar.addfile(info, io.BytesIO(os.urandom(4096)))
EOF
    for dir in "$MNT" "$NATIVE" "$PT"; do mkdir "$dir/files$i"; done
    drop_caches; cat "$WORK/files$i.tar" > /dev/null
    t_ours+=("$(ms tar xf "$WORK/files$i.tar" -C "$MNT/files$i")")
    drop_caches; cat "$WORK/files$i.tar" > /dev/null
    t_nat+=("$(ms tar xf "$WORK/files$i.tar" -C "$NATIVE/files$i")")
    drop_caches; cat "$WORK/files$i.tar" > /dev/null
    t_pt+=("$(ms tar xf "$WORK/files$i.tar" -C "$PT/files$i")")
    for dir in "$MNT" "$PT"; do
        diff -q <(cd "$dir/files$i/d7" && cat $(seq -f 'f%g' 0 99)) <(cd "$NATIVE/files$i/d7" && cat $(seq -f 'f%g' 0 99)) >/dev/null \
            || { echo "bench-files.sh: files extracted into $dir differ" >&2; exit 1; }
    done
    r_ours+=("$(python3 -c "$PY_READ" "$MNT/files$i")")
    r_nat+=("$(python3 -c "$PY_READ" "$NATIVE/files$i")")
    r_pt+=("$(python3 -c "$PY_READ" "$PT/files$i")")
    rm -f "$WORK/files$i.tar"
done
want 1 && row "tar x, 10 000 files of 4 KiB" ms "${t_ours[*]}" "${t_nat[*]}" "${t_pt[*]}"
want 2 && row "open + read + close, 4 KiB, warm" us/file "${r_ours[*]}" "${r_nat[*]}" "${r_pt[*]}"
rm -rf "$MNT"/files* "$NATIVE"/files* "$PT"/files*

# 3 to 5: big writes. One random source per run, in the page cache before each timed copy.
BIG_RUNS=$RUNS
want 3 4 5 || BIG_RUNS=0
for i in $(seq "$BIG_RUNS"); do head -c 1G /dev/urandom > "$WORK/big$i"; done
w_ours=() w_nat=() w_pt=() a_ours=() a_nat=() a_pt=() e_ours=() e_nat=() e_pt=()
copy_and_hash() { # SOURCE DEST: cp, then the checksum as each side gets it
    drop_caches; cat "$1" > /dev/null
    case "$2" in
        "$MNT"/*) ms sh -c "cp '$1' '$2' && cat '$2.CHECKSUM'" ;;
        *) ms sh -c "cp '$1' '$2' && openssl dgst -sha256 '$2'" ;;
    esac
}
for i in $(seq "$BIG_RUNS"); do
    src=$WORK/big$i
    w_ours+=("$(copy_and_hash "$src" "$MNT/big$i")")
    w_nat+=("$(copy_and_hash "$src" "$NATIVE/big$i")")
    w_pt+=("$(copy_and_hash "$src" "$PT/big$i")")
    [ "$(cat "$MNT/big$i.CHECKSUM")" = "$(checksum_of "$src")" ] || { echo "bench-files.sh: checksum mismatch" >&2; exit 1; }
    a_ours+=("$(copy_and_hash "$src" "$MNT/again$i")")
    a_nat+=("$(copy_and_hash "$src" "$NATIVE/again$i")")
    a_pt+=("$(copy_and_hash "$src" "$PT/again$i")")
    rm -f "$MNT/again$i" "$NATIVE/again$i" "$PT/again$i"
    sync
    middle=$((512 << 20))
    e_ours+=("$(python3 -c "$PY_PWRITE" "$MNT/big$i" $middle)")
    e_nat+=("$(python3 -c "$PY_PWRITE" "$NATIVE/big$i" $middle)")
    e_pt+=("$(python3 -c "$PY_PWRITE" "$PT/big$i" $middle)")
    same_checksum "$MNT/big$i" "$NATIVE/big$i" "a 1-byte edit"
    rm -f "$MNT/big$i" "$NATIVE/big$i" "$PT/big$i" "$src"
done
want 3 && row "write 1 GiB + checksum (cp+openssl)" ms "${w_ours[*]}" "${w_nat[*]}" "${w_pt[*]}"
want 4 && row "identical rewrite of that 1 GiB" ms "${a_ours[*]}" "${a_nat[*]}" "${a_pt[*]}"
want 4 && awk -v a="$(median "${a_ours[@]}")" -v w="$(median "${w_ours[@]}")" \
    'BEGIN { printf "%-40s %11.2fx  (target <= 0.5x)\n", "  seamfs identical rewrite / new write", a / w }'
want 5 && row "1-byte pwrite mid 1 GiB file + close" ms "${e_ours[*]}" "${e_nat[*]}" "${e_pt[*]}"

# 6 and 7: sparse growth of a small stored file.
p_ours=() p_nat=() p_pt=() x_ours=() x_nat=() x_pt=()
want 6 7 && for i in $(seq "$RUNS"); do
    head -c 4096 /dev/urandom > "$WORK/small$i"
    for dir in "$MNT" "$NATIVE" "$PT"; do
        cp "$WORK/small$i" "$dir/p$i"
        cp "$WORK/small$i" "$dir/t$i"
    done
    sync
    p_ours+=("$(python3 -c "$PY_PWRITE" "$MNT/p$i" $((4 << 30)))")
    p_nat+=("$(python3 -c "$PY_PWRITE" "$NATIVE/p$i" $((4 << 30)))")
    p_pt+=("$(python3 -c "$PY_PWRITE" "$PT/p$i" $((4 << 30)))")
    same_checksum "$MNT/p$i" "$NATIVE/p$i" "a pwrite at 4 GiB"
    x_ours+=("$(python3 -c "$PY_TRUNCATE" "$MNT/t$i")")
    x_nat+=("$(python3 -c "$PY_TRUNCATE" "$NATIVE/t$i")")
    x_pt+=("$(python3 -c "$PY_TRUNCATE" "$PT/t$i")")
    same_checksum "$MNT/t$i" "$NATIVE/t$i" "truncate -s 4G"
    rm -f "$WORK/small$i" "$MNT/p$i" "$MNT/t$i" "$NATIVE/p$i" "$NATIVE/t$i" "$PT/p$i" "$PT/t$i"
done
want 6 && row "1-byte pwrite at 4 GiB + close" ms "${p_ours[*]}" "${p_nat[*]}" "${p_pt[*]}"
want 7 && row "truncate -s 4G (open+ftruncate+close)" ms "${x_ours[*]}" "${x_nat[*]}" "${x_pt[*]}"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
