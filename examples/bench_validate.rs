//! Benchmark of the `python` validator: every `.py` file of a CPython stdlib directory (as
//! seamless sees it: strict UTF-8, trailing newlines removed), validated one after the other.
//! Prints `seconds_median megabytes files accepted` for scripts/bench-validate.sh.
//!
//! Usage: cargo run --release --example bench_validate -- STDLIB_DIR [RUNS]

use std::path::Path;
use std::time::Instant;

use seamfs::celltype::python;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .expect("usage: bench_validate STDLIB_DIR [RUNS]");
    let runs: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("RUNS must be a whole number"));
    let texts = load(Path::new(&root));
    let bytes: usize = texts.iter().map(String::len).sum();
    let mut seconds = Vec::with_capacity(runs);
    let mut accepted = 0;
    for _ in 0..runs {
        let start = Instant::now();
        accepted = texts.iter().filter(|t| python::validate(t).is_ok()).count();
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "{:.4} {:.3} {} {}",
        seconds[runs / 2],
        bytes as f64 / 1e6,
        texts.len(),
        accepted
    );
}

/// The stdlib's `.py` files outside site-packages, in path order, that decode as UTF-8.
fn load(root: &Path) -> Vec<String> {
    let mut paths: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "py")
                && !p.to_string_lossy().contains("site-packages")
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| String::from_utf8(std::fs::read(p).ok()?).ok())
        .map(|t| t.trim_end_matches('\n').to_string())
        .collect()
}
