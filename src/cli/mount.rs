//! `seamfs mount MOUNTPOINT: the filesystem`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    path: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mount is not built yet")
}
