#!/usr/bin/env bash
# Benchmark of the remote tiers against curl of the same objects, side by side in one run
# (medians of RUNS runs, default 3; distinct content per run), on 127.0.0.1:
#   1. cold sequential read of a SIZE (default 1G) buffer through a mount with --remote: the
#      Python hashserver 1.1.0, `seamfs hashserver` and moto's S3 server, against curl of the
#      same object (curl --aws-sigv4 for S3); and the time to the first 4 KiB of it (goal
#      <= 50 ms). The Python hashserver re-hashes a buffer before its first byte, at each GET:
#      its own first byte comes late; `seamfs hashserver` verifies a buffer once;
#   2. SMALL (default 1000) small buffers read cold through the mount, against curl in a loop;
#   3. write SIZE into a mount with --push (until its fsync returns: pushed), against
#      cp + curl -T of the same bytes.
# Beside the cold reads, the ceiling of a read that keeps a copy: curl -o FILE on the same disk
# as the store (no hashing, no fsync; seamfs also hashes every byte and makes the copy durable).
# The page cache is not dropped: "cold" means not in the mount's store; each server has just
# served the object once (untimed) before each timed read, and `sync` has written the setup's
# gigabytes to disk before it (left dirty, they throttle the next timed read that writes). moto keeps objects in
# memory and is slow for large bodies; its figures compare seamfs with curl against the same
# server. Needs root (FUSE), .venv-hashserver and .venv-s3 (scripts/setup-python).
# Usage: SIZE=1G SMALL=1000 RUNS=3 scripts/bench-remote.sh [WORKDIR]
# (BIN=path/to/seamfs skips the release build, e.g. to try the script on a debug build.)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3} SIZE=${SIZE:-1G} SMALL=${SMALL:-1000}
if [ -z "${BIN:-}" ]; then
    cargo build --release --bin seamfs >&2
    BIN=$PWD/target/release/seamfs
fi
WORK=${1:-$(mktemp -d /var/tmp/seamfs-bench-remote.XXXXXX)}
mkdir -p "$WORK"
MNT=$WORK/mnt
PIDS=() MPID=

cleanup() {
    [ -n "$MPID" ] && kill -TERM "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null || true
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; } || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

HS_PORT=$(free_port) S3_PORT=$(free_port) RS_PORT=$(free_port)
mkdir -p "$WORK/hs" "$WORK/rs"
.venv-hashserver/bin/hashserver "$WORK/hs" --writable --layout flat --port "$HS_PORT" >/dev/null 2>&1 &
PIDS+=($!)
RUST_LOG=warn "$BIN" hashserver "$WORK/rs" --writable --layout flat --port "$RS_PORT" >/dev/null 2>&1 &
PIDS+=($!)
.venv-s3/bin/moto_server -H 127.0.0.1 -p "$S3_PORT" >/dev/null 2>&1 &
PIDS+=($!)
HS=http://127.0.0.1:$HS_PORT S3=http://127.0.0.1:$S3_PORT RS=http://127.0.0.1:$RS_PORT
wait_http "$HS/healthcheck"; wait_http "$S3/"; wait_http "$RS/healthcheck"
curl -sf -X PUT "$S3/bench" >/dev/null
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$S3 AWS_ALLOW_HTTP=true
SIGV4=(--aws-sigv4 "aws:amz:us-east-1:s3" --user bench:bench)

mount_seamfs() { # store (removed at unmount), extra arguments
    STORE=$1; local store=$1; shift
    mkdir -p "$MNT"
    RUST_LOG=warn "$BIN" mount "$MNT" --store "$store" --no-db "$@" &
    MPID=$!
    for _ in $(seq 1 600); do mountpoint -q "$MNT" && return; sleep 0.05; done
    echo "bench-remote.sh: seamfs did not mount" >&2; exit 1
}
unmount_seamfs() { kill -TERM "$MPID"; wait "$MPID" || true; MPID=; rm -rf "$STORE"; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
row() { awk -v l="$1" -v o="$2" -v p="$3" -v u="$4" 'BEGIN {
    printf "%-44s %10.1f %10.1f  %-3s  %.2fx\n", l, o, p, u, (o > 0) ? p / o : 0 }'; }

# Milliseconds to the first 4 KiB and to the end of a file read sequentially.
read_times() { python3 - "$1" <<'EOF'
import sys, time
t0 = time.monotonic()
with open(sys.argv[1], "rb", buffering=0) as f:
    f.read(4096); t1 = time.monotonic()
    while f.read(1 << 20): pass
t2 = time.monotonic()
print(f"{(t1 - t0) * 1000:.1f} {(t2 - t0) * 1000:.1f}")
EOF
}

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
for run in $(seq "$RUNS"); do
    big=$WORK/big$run
    head -c "$SIZE" /dev/urandom > "$big"
    cs=$(sha256sum "$big" | cut -c1-64)
    curl -sf -T "$big" "$HS/$cs" >/dev/null
    curl -sf -T "$big" "$RS/$cs" >/dev/null
    curl -sf "${SIGV4[@]}" -T "$big" "$S3/bench/b/$cs" >/dev/null
    for remote in hs rs s3; do
        case $remote in
            hs) addr=$HS; url=$HS/$cs; auth=() ;;
            rs) addr=$RS; url=$RS/$cs; auth=() ;;
            s3) addr=s3://bench/b; url=$S3/bench/b/$cs; auth=("${SIGV4[@]}") ;;
        esac
        # One untimed GET of the object right before, so that seamfs (timed first) meets the
        # server as the timed curl does, just after a GET of the same object. moto is slower
        # otherwise: 1.25 s to the first byte of a 1 GiB object just PUT, 0.9 s after two other
        # GiB were read meanwhile, 0.5 s right after a GET (it reads the object into a new
        # 1 GiB buffer at each GET).
        curl -sf "${auth[@]}" -o /dev/null "$url"
        # The setup's writes (the object, three PUTs: gigabytes) reach the disk first: left
        # dirty, they throttle whichever timed read writes to the disk next (the mount's cache).
        sync
        mount_seamfs "$WORK/store-$remote-$run" --remote "$addr"
        read -r ttfb total < <(read_times "$MNT/by-checksum/$cs")
        unmount_seamfs
        sync
        peer=$(curl -s "${auth[@]}" -o /dev/null -w '%{time_starttransfer} %{time_total}' "$url")
        add "$remote-ttfb" "$ttfb"; add "$remote-read" "$total"
        add "$remote-ttfb-curl" "$(echo "$peer" | awk '{print $1 * 1000}')"
        add "$remote-read-curl" "$(echo "$peer" | awk '{print $2 * 1000}')"
        add "$remote-file-curl" "$(curl -s "${auth[@]}" -o "$WORK/copy" -w '%{time_total}' "$url" | awk '{print $1 * 1000}')"
        rm -f "$WORK/copy"
    done
    rm -f "$big" "$WORK/hs/$cs" "$WORK/rs/$cs"
    curl -sf "${SIGV4[@]}" -X DELETE "$S3/bench/b/$cs" >/dev/null

    # Small buffers: SMALL distinct ones on the hashserver, read cold through a fresh store.
    mkdir -p "$WORK/small"
    for i in $(seq "$SMALL"); do
        f=$WORK/small/$i; printf 'run %s small buffer %s %s' "$run" "$i" "$RANDOM" > "$f"
        c=$(sha256sum "$f" | cut -c1-64); cp "$f" "$WORK/hs/$c"; echo "$c"
    done > "$WORK/small.list"
    mount_seamfs "$WORK/store-small-$run" --remote "$HS"
    s=$(now_ms); while read -r c; do cat "$MNT/by-checksum/$c" >/dev/null; done < "$WORK/small.list"; e=$(now_ms)
    unmount_seamfs
    add small "$((e - s))"
    s=$(now_ms); while read -r c; do curl -s -o /dev/null "$HS/$c"; done < "$WORK/small.list"; e=$(now_ms)
    add small-curl "$((e - s))"
    rm -rf "$WORK/small"

    # Write with --push until fsync returns, against cp + curl -T.
    head -c "$SIZE" /dev/urandom > "$WORK/w$run"
    mount_seamfs "$WORK/store-push-$run" --push "$HS"
    s=$(now_ms); dd if="$WORK/w$run" of="$MNT/w" bs=1M conv=fsync status=none; e=$(now_ms)
    unmount_seamfs
    add push "$((e - s))"
    head -c "$SIZE" /dev/urandom > "$WORK/x$run"
    s=$(now_ms)
    cp "$WORK/x$run" "$WORK/copy"; c=$(sha256sum "$WORK/copy" | cut -c1-64)
    curl -sf -T "$WORK/copy" "$HS/$c" >/dev/null; e=$(now_ms)
    add push-curl "$((e - s))"
    rm -f "$WORK/w$run" "$WORK/x$run" "$WORK/copy"
done

m() { median ${R[$1]}; }
printf '%-44s %10s %10s  %-3s  %s\n' "measurement, $SIZE (median of $RUNS)" seamfs curl unit "ratio (curl/seamfs, >= 1: seamfs as fast)"
row "cold read via hashserver" "$(m hs-read)" "$(m hs-read-curl)" ms
row "  ceiling: curl -o FILE (same disk)" "$(m hs-read)" "$(m hs-file-curl)" ms
row "first 4 KiB via hashserver (goal <= 50 ms)" "$(m hs-ttfb)" "$(m hs-ttfb-curl)" ms
row "cold read via seamfs hashserver" "$(m rs-read)" "$(m rs-read-curl)" ms
row "  ceiling: curl -o FILE (same disk)" "$(m rs-read)" "$(m rs-file-curl)" ms
row "first 4 KiB via seamfs hashserver (goal <= 50)" "$(m rs-ttfb)" "$(m rs-ttfb-curl)" ms
row "cold read via S3 (moto)" "$(m s3-read)" "$(m s3-read-curl)" ms
row "  ceiling: curl -o FILE (same disk)" "$(m s3-read)" "$(m s3-file-curl)" ms
row "first 4 KiB via S3 (moto)" "$(m s3-ttfb)" "$(m s3-ttfb-curl)" ms
row "$SMALL small buffers cold via hashserver" "$(m small)" "$(m small-curl)" ms
row "write + push (fsync) vs cp + sha256 + curl -T" "$(m push)" "$(m push-curl)" ms
