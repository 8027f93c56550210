//! One phase of `scripts/bench-offload.sh`, run in its own process so its peak RSS is its own:
//!
//!   bench_offload offload DIR SIZE_BYTES   build a float64 arange of SIZE_BYTES and store it as
//!                                         DIR/big.npy + big.meta.json (named-array store)
//!   bench_offload reload DIR               map DIR/big.npy again and sum every element
//!   bench_offload entry DIR SIZE_BYTES     memmap tier: OffloadEntry with caching, offload, load,
//!                                         sum every element
//!
//! Prints one line: `<phase> seconds=<s> peak_rss_kib=<VmHWM> check=<sum>`.

use std::time::Instant;

use bytes::Bytes;
use seamfs::gseg::{EntryFlags, LoadMode, NamedArrayStore, OffloadConfig, OffloadEntry};
use seamfs::value::{ByteOrder, DType, Layout, NdArray};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let phase = args.first().map(String::as_str).unwrap_or("");
    let dir = args
        .get(1)
        .expect("usage: bench_offload offload|reload|entry DIR [SIZE_BYTES]");
    let size = || {
        args.get(2)
            .expect("SIZE_BYTES is needed")
            .parse::<usize>()
            .expect("SIZE_BYTES is a number")
    };
    match phase {
        "offload" => offload(dir, size()),
        "reload" => reload(dir),
        "entry" => entry(dir, size()),
        other => panic!("unknown phase {other:?}: use offload, reload or entry"),
    }
}

/// `np.arange(n, dtype=float64)` as little-endian bytes.
fn arange_bytes(size: usize) -> Vec<u8> {
    let n = size / 8;
    let mut data = Vec::with_capacity(n * 8);
    for i in 0..n {
        data.extend_from_slice(&(i as f64).to_le_bytes());
    }
    data
}

/// Sum of little-endian f64s, in 8 independent lanes so the compiler can vectorize it (numpy's
/// `sum` is vectorized too; for integer-valued arrays below 2^53 the order does not matter).
fn sum_f64(bytes: &[u8]) -> f64 {
    let mut lanes = [0f64; 8];
    let blocks = bytes.chunks_exact(64);
    let rest = blocks.remainder();
    for block in blocks {
        for (lane, c) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane += f64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
    }
    let tail: f64 = rest
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

fn offload(dir: &str, size: usize) {
    let data = arange_bytes(size);
    let array = NdArray {
        dtype: DType::Simple {
            kind: 'f',
            order: ByteOrder::Little,
            size: 8,
        },
        shape: vec![size / 8],
        layout: Layout::C,
        data: Bytes::from(data),
    };
    let store = NamedArrayStore::open(dir).expect("opening the store");
    let start = Instant::now();
    store
        .put("big", &array, EntryFlags::default())
        .expect("storing the array");
    report("offload", start, 0.0);
}

fn reload(dir: &str) {
    let store = NamedArrayStore::open(dir).expect("opening the store");
    let start = Instant::now();
    let array = store
        .get("big")
        .expect("reading the array")
        .expect("big.npy is there");
    let check = sum_f64(array.data.as_slice());
    report("reload", start, check);
}

fn entry(dir: &str, size: usize) {
    let data = arange_bytes(size);
    let config = OffloadConfig {
        enable_caching: true,
        cache_path: Some(std::path::Path::new(dir).join("entry.npy")),
        purge_on_drop: true,
        automatic_offloading: false,
    };
    let start = Instant::now();
    let e = OffloadEntry::new(data, config).expect("offloading");
    e.offload().expect("offload");
    report("entry-offload", start, 0.0);
    let start = Instant::now();
    e.load(LoadMode::ReadOnly).expect("load");
    let check = e.with_bytes(sum_f64).expect("reading");
    report("entry-reload", start, check);
}

fn report(phase: &str, start: Instant, check: f64) {
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{phase} seconds={seconds:.4} peak_rss_kib={} check={check}",
        peak_rss_kib()
    );
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB")
}
