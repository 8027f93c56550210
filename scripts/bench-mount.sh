#!/usr/bin/env bash
# Benchmark of the mount against the native filesystem, side by side in one run (medians of
# RUNS runs, default 3):
#   1. sequential read of a 1 GiB buffer (by-checksum/<hex>), warm and cold (page cache dropped),
#      against the same bytes read from a native file;
#   2. write 1 GiB into the mount + read its .CHECKSUM, against cp to disk + openssl dgst -sha256;
#   3. stat latency over 10 000 tree entries, against 10 000 native files;
#   4. memory: with --ram-cache 64M, write and re-read 2 GiB; the daemon's peak RssAnon.
# Needs root (drop_caches, FUSE). Usage: scripts/bench-mount.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
[ "$(id -u)" = 0 ] || { echo "bench-mount.sh: run as root (it drops the page cache)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "bench-mount.sh: openssl is missing" >&2; exit 1; }
cargo build --release --bin seamfs >&2
BIN=$PWD/target/release/seamfs
WORK=${1:-$(mktemp -d /var/tmp/seamfs-bench.XXXXXX)}
mkdir -p "$WORK"
MNT=$WORK/mnt STORE=$WORK/store NATIVE=$WORK/native
PID=

cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; } || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mount_seamfs() {
    mkdir -p "$MNT"
    RUST_LOG=warn "$BIN" mount "$MNT" --store "$STORE" --no-db "$@" &
    PID=$!
    for _ in $(seq 1 600); do mountpoint -q "$MNT" && return; sleep 0.05; done
    echo "bench-mount.sh: seamfs did not mount" >&2; exit 1
}

unmount_seamfs() {
    kill -TERM "$PID"; wait "$PID" || true; PID=
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Milliseconds taken by a command (its output discarded).
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Print one result row: label, ours, peer, unit, and the ratio (peer/ours for speeds).
row() { awk -v l="$1" -v o="$2" -v p="$3" -v u="$4" -v k="$5" 'BEGIN {
    r = (k == "time") ? p / o : o / p
    printf "%-38s %12.3f %12.3f  %-6s  %.2fx\n", l, o, p, u, r }'; }

# One source file per run: identical content would be deduplicated by the store (the temp file
# is then deleted, which on this disk costs as much as writing it), which is not what is measured.
mkdir -p "$NATIVE"
for i in $(seq "$RUNS"); do head -c 1G /dev/urandom > "$NATIVE/big$i"; done
mount_seamfs

printf '%-38s %12s %12s  %-6s  %s\n' "measurement (median of $RUNS)" "seamfs" "native" "unit" "ratio (>=1: seamfs at least as fast)"

# 2. write 1 GiB + its checksum, vs cp + openssl.
w_ours=() w_peer=()
for i in $(seq "$RUNS"); do
    drop_caches; cat "$NATIVE/big$i" > /dev/null
    w_ours+=("$(ms sh -c "cp '$NATIVE/big$i' '$MNT/big$i' && cat '$MNT/big$i.CHECKSUM'")")
    drop_caches; cat "$NATIVE/big$i" > /dev/null
    w_peer+=("$(ms sh -c "cp '$NATIVE/big$i' '$NATIVE/copy$i' && openssl dgst -sha256 '$NATIVE/copy$i'")")
    rm -f "$NATIVE/copy$i"
done
HEX=$(cat "$MNT/big1.CHECKSUM")
[ "$HEX" = "$(sha256sum "$NATIVE/big1" | cut -c1-64)" ] || { echo "checksum mismatch" >&2; exit 1; }

# 1. sequential read of the 1 GiB buffer.
r_cold=() n_cold=() r_warm=() n_warm=()
for i in $(seq "$RUNS"); do
    drop_caches; r_cold+=("$(ms dd if="$MNT/by-checksum/$HEX" of=/dev/null bs=1M)")
    drop_caches; n_cold+=("$(ms dd if="$NATIVE/big1" of=/dev/null bs=1M)")
done
cat "$MNT/by-checksum/$HEX" "$NATIVE/big1" > /dev/null
for i in $(seq "$RUNS"); do
    r_warm+=("$(ms dd if="$MNT/by-checksum/$HEX" of=/dev/null bs=1M)")
    n_warm+=("$(ms dd if="$NATIVE/big1" of=/dev/null bs=1M)")
done
gbs() { awk -v t="$1" 'BEGIN { printf "%.3f", 1.073741824 / (t / 1000) }'; }
row "sequential read 1 GiB, cold" "$(gbs "$(median "${r_cold[@]}")")" "$(gbs "$(median "${n_cold[@]}")")" "GB/s" speed
row "sequential read 1 GiB, warm" "$(gbs "$(median "${r_warm[@]}")")" "$(gbs "$(median "${n_warm[@]}")")" "GB/s" speed
row "write 1 GiB + checksum (cp+openssl)" "$(median "${w_ours[@]}")" "$(median "${w_peer[@]}")" "ms" time

# 3. stat latency over 10 000 entries.
mkdir -p "$MNT/stat" "$NATIVE/stat"
python3 - "$MNT/stat" "$NATIVE/stat" <<'EOF'
import os, sys
for d in sys.argv[1:]:
    for i in range(10000):
        open(os.path.join(d, f"f{i}"), "wb").close()
EOF
STATLOOP='import os, sys, time
paths = [os.path.join(sys.argv[1], f"f{i}") for i in range(10000)]
t = time.perf_counter()
for p in paths: os.stat(p)
print((time.perf_counter() - t) / len(paths) * 1e6)'
s_ours=() s_peer=()
for i in $(seq "$RUNS"); do
    s_ours+=("$(python3 -c "$STATLOOP" "$MNT/stat")")
    s_peer+=("$(python3 -c "$STATLOOP" "$NATIVE/stat")")
done
row "stat, 10 000 entries" "$(median "${s_ours[@]}")" "$(median "${s_peer[@]}")" "us/op" time
rm -f "$MNT"/big* "$NATIVE"/big*
unmount_seamfs

# 4. memory with a 64 MiB RAM cache: write and re-read 2 GiB, sampling the daemon's RssAnon.
mount_seamfs --ram-cache 64M
( while kill -0 "$PID" 2>/dev/null; do awk '/RssAnon/ {print $2}' "/proc/$PID/status"; sleep 0.05; done ) > "$WORK/rss" &
SAMPLER=$!
head -c 2G /dev/urandom | tee "$MNT/two-gib" | sha256sum | cut -c1-64 > "$WORK/expected"
drop_caches
[ "$(sha256sum < "$MNT/two-gib" | cut -c1-64)" = "$(cat "$WORK/expected")" ] || { echo "2 GiB re-read differs" >&2; exit 1; }
[ "$(cat "$MNT/two-gib.CHECKSUM")" = "$(cat "$WORK/expected")" ] || { echo "2 GiB checksum differs" >&2; exit 1; }
kill "$SAMPLER" 2>/dev/null || true
peak=$(sort -n "$WORK/rss" | tail -1)
printf '%-38s %12s %12s  %-6s  %s\n' "peak RssAnon, 2 GiB, --ram-cache 64M" "$((peak / 1024))" "164" "MiB" "$( [ "$peak" -lt $((164 * 1024)) ] && echo "under the 164 MiB bound" || echo "OVER the 164 MiB bound")"
unmount_seamfs
