//! `seamfs fsck STORE: verify stored buffers`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    path: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("fsck is not built yet")
}
