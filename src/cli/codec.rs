//! `seamfs encode`, `decode` and `compat-check`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EncodeArgs {
    #[arg(long)]
    celltype: String,
    file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    #[arg(long)]
    celltype: String,
    file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct CompatCheckArgs {
    vectors: std::path::PathBuf,
}

pub fn run_encode(_args: EncodeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("encode is not built yet")
}

pub fn run_decode(_args: DecodeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("decode is not built yet")
}

pub fn run_compat_check(_args: CompatCheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("compat-check is not built yet")
}
