//! `seamfs gc STORE`: remove the buffers nothing references (see `store::gc`), offline (the
//! command takes the store lock) or, with `--mounted MOUNTPOINT`, inside the mount that serves
//! the store (through the `user.seamfs.gc` attribute of `MOUNTPOINT/.seamfs`). Also the small
//! extended-attribute helpers `seamfs pin` shares.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::store::{GcOptions, Store, StoreOptions};

/// What `seamfs gc --help` shows after the options.
const GC_HELP: &str = "\
Kept: buffers a file of the tree, a pending claim (X.CHECKSUM written before X), a pin or (unless
--include-results) a database record names as a result. Prints each removed buffer (<hex> <bytes>)
and what was freed. The store must not be mounted; while it is, use --mounted.

Examples:
  seamfs gc ~/.local/share/seamfs --dry-run
  seamfs gc --mounted ~/mnt
  setfattr -n user.seamfs.gc -v run ~/mnt/.seamfs && getfattr -n user.seamfs.gc ~/mnt/.seamfs";

#[derive(clap::Args)]
#[command(after_help = GC_HELP)]
pub struct Args {
    /// The store directory (not mounted; use --mounted for a mounted store).
    #[arg(required_unless_present = "mounted", conflicts_with = "mounted")]
    store: Option<PathBuf>,
    /// Run inside the seamfs mount at this mount point (while it serves the store).
    #[arg(long, value_name = "MOUNTPOINT")]
    mounted: Option<PathBuf>,
    /// Only report what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Also remove buffers that only database records name as results.
    #[arg(long)]
    include_results: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = GcOptions {
        dry_run: args.dry_run,
        include_results: args.include_results,
    };
    let text = match (&args.store, &args.mounted) {
        (_, Some(mountpoint)) => gc_mounted(mountpoint, options)?,
        (Some(store), None) => {
            let store = Store::open(store, &StoreOptions::default(), "collect garbage")?;
            // Files a killed mount closed may be in its journal only.
            crate::fs::journal::replay(store.db())?;
            store.gc(options)?.text()
        }
        (None, None) => unreachable!("clap requires one"),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn gc_mounted(mountpoint: &Path, options: GcOptions) -> anyhow::Result<String> {
    let control = mountpoint.join(".seamfs");
    let mut command = if options.dry_run { "dry-run" } else { "run" }.to_string();
    if options.include_results {
        command.push_str(" include-results");
    }
    set_xattr(&control, "user.seamfs.gc", command.as_bytes()).with_context(|| {
        format!(
            "cannot run gc in the mount at {} (is it a seamfs mount? A mount of a deployment's \
             --buffers directory refuses gc: \"Operation not supported\")",
            mountpoint.display()
        )
    })?;
    let report = get_xattr(&control, "user.seamfs.gc")?;
    Ok(String::from_utf8_lossy(&report).into_owned())
}

/// `setxattr(2)`.
pub(super) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> anyhow::Result<()> {
    let (path_c, name_c) = c_strings(path, name)?;
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            path_c.as_ptr(),
            name_c.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!("setting {name} on {} failed: {e}", path.display());
    }
    Ok(())
}

/// `getxattr(2)` (values up to 16 MiB).
fn get_xattr(path: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let (path_c, name_c) = c_strings(path, name)?;
    let mut value = vec![0u8; 16 << 20];
    // SAFETY: valid NUL-terminated strings and a writable buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            path_c.as_ptr(),
            name_c.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        bail!("reading {name} of {} failed: {e}", path.display());
    }
    value.truncate(n as usize);
    Ok(value)
}

fn c_strings(path: &Path, name: &str) -> anyhow::Result<(CString, CString)> {
    Ok((
        CString::new(path.as_os_str().as_bytes())?,
        CString::new(name)?,
    ))
}
