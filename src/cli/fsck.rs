//! `seamfs fsck STORE`: verify every buffer of a store directory against its name, in parallel;
//! move corrupt files to `STORE/quarantine/`, remove temp files of dead writers, exit 1 if
//! anything was corrupt. Takes the store lock (it changes the store): not while mounted.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::checksum::Checksum;
use crate::store::{Store, StoreOptions, Verdict};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  seamfs fsck                          # the default store ($XDG_DATA_HOME/seamfs)\n  seamfs fsck --store ~/seamfs-store   # like `seamfs mount --store`\n  seamfs fsck ~/seamfs-store"
)]
pub struct Args {
    /// The store root (the directory holding `buffers/`); default: as `seamfs mount`.
    path: Option<PathBuf>,
    /// The store root, as in `seamfs mount --store`.
    #[arg(long, conflicts_with = "path")]
    store: Option<PathBuf>,
}

/// One corrupt buffer, as reported.
struct Finding {
    expected: Checksum,
    actual: Checksum,
    moved_to: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = match args.store.or(args.path) {
        Some(path) => path,
        None => super::mount::default_store()?,
    };
    super::mount::check_store_dir(&path)?;
    anyhow::ensure!(
        path.join("buffers").is_dir(),
        "{} is not a seamfs store (it has no buffers/ directory)",
        path.display()
    );
    let store = Store::open(&path, &StoreOptions::default(), "check it")
        .with_context(|| format!("opening {}", path.display()))?;
    let progress = progress_bar(&store)?;
    let findings = Mutex::new(Vec::new());
    let checked = store
        .own_buffers()
        .par_bridge()
        .map(|item| {
            let checksum = item?;
            if let Verdict::Corrupt { actual } = store.verify(&checksum)? {
                let moved_to = store.quarantine(&checksum).ok();
                let finding = Finding {
                    expected: checksum,
                    actual,
                    moved_to,
                };
                findings
                    .lock()
                    .expect("no panics while holding it")
                    .push(finding);
            }
            progress.inc(buffer_len(&store, &checksum));
            Ok(())
        })
        .collect::<Result<Vec<()>, crate::store::StoreError>>()?
        .len();
    progress.finish_and_clear();
    let findings = findings.into_inner().expect("no panics while holding it");
    report(&store, checked, &findings);
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar on a terminal, by bytes (the time to verify a buffer is its size; the sizes
/// are summed first), hidden otherwise.
fn progress_bar(store: &Store) -> anyhow::Result<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let total = store
        .own_buffers()
        .filter_map(Result::ok)
        .map(|c| buffer_len(store, &c))
        .sum();
    let style = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} verified ({binary_bytes_per_sec}, {eta} left)",
    )?;
    Ok(ProgressBar::new(total).with_style(style))
}

fn buffer_len(store: &Store, checksum: &Checksum) -> u64 {
    store.tiers().length(checksum).ok().flatten().unwrap_or(0)
}

fn report(store: &Store, checked: usize, findings: &[Finding]) {
    for f in findings {
        match &f.moved_to {
            Some(path) => println!(
                "corrupt {}: its content has checksum {}; moved to {}",
                f.expected,
                f.actual,
                path.display()
            ),
            None => println!(
                "corrupt {}: its content has checksum {}; could not be moved, delete {} by hand",
                f.expected,
                f.actual,
                store
                    .tiers()
                    .local_path(&f.expected)
                    .unwrap_or_default()
                    .display()
            ),
        }
    }
    println!(
        "{checked} buffers checked, {} corrupt, {} stale temp files removed",
        findings.len(),
        store.stale_temps_removed()
    );
}
