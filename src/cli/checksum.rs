//! `seamfs checksum`, `checksum-file`, `checksum-index`: the seamless-core checksum tools.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ChecksumArgs {
    files: Vec<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct ChecksumFileArgs {
    files: Vec<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct ChecksumIndexArgs {
    dir: std::path::PathBuf,
}

pub fn run_checksum(_args: ChecksumArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("checksum is not built yet")
}

pub fn run_checksum_file(_args: ChecksumFileArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("checksum-file is not built yet")
}

pub fn run_checksum_index(_args: ChecksumIndexArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("checksum-index is not built yet")
}
