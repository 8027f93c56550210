//! `seamfs database DATABASE_FILE: serve a Seamless database over HTTP`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    path: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("database is not built yet")
}
