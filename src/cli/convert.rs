//! `seamfs convert` and `seamfs conversions`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ConvertArgs {
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct ConversionsArgs {}

pub fn run_convert(_args: ConvertArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("convert is not built yet")
}

pub fn run_conversions(_args: ConversionsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("conversions is not built yet")
}
