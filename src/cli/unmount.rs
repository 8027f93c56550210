//! `seamfs unmount MOUNTPOINT`: unmount a seamfs mount (foreground or `--daemon`); the daemon
//! then finishes its pending work and exits.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::bail;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  seamfs unmount ~/mnt                 # a mount started with or without --daemon\n  seamfs mount ~/mnt --daemon && seamfs unmount ~/mnt"
)]
pub struct Args {
    /// The mount point.
    mountpoint: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = &args.mountpoint;
    let mounted = path
        .canonicalize()
        .is_ok_and(|p| super::mount::mount_id(&p).is_some());
    if !mounted {
        bail!("{} is not mounted", path.display());
    }
    let out = Command::new("fusermount3").arg("-u").arg(path).output();
    let err = match out {
        Ok(out) if out.status.success() => return Ok(ExitCode::SUCCESS),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => format!("cannot run fusermount3 ({e}): install fuse3"),
    };
    if err.contains("busy") {
        bail!(
            "{} is busy: a process still uses it (a shell inside it, an open file; `fuser -vm {}` lists them); close them and retry",
            path.display(),
            path.display()
        );
    }
    bail!("cannot unmount {}: {err}", path.display())
}
