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
pub struct Args {
    /// The store root (the directory holding `buffers/`).
    path: PathBuf,
}

/// One corrupt buffer, as reported.
struct Finding {
    expected: Checksum,
    actual: Checksum,
    moved_to: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.path.join("buffers").is_dir(),
        "{} is not a seamfs store (it has no buffers/ directory)",
        args.path.display()
    );
    let store = Store::open(&args.path, &StoreOptions::default(), "check it")
        .with_context(|| format!("opening {}", args.path.display()))?;
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
            progress.inc(1);
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

/// A progress bar on a terminal (counting the buffers first), hidden otherwise.
fn progress_bar(store: &Store) -> anyhow::Result<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let total = store.own_buffers().count() as u64;
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} buffers verified ({eta} left)")?;
    Ok(ProgressBar::new(total).with_style(style))
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
