//! `seamfs pin HEX`: keep a buffer through eviction and garbage collection (or `--unpin`), in a
//! store that is not mounted (`--store`) or through a mount (`--mounted`, the
//! `user.seamless.pin` attribute of `by-checksum/HEX`, which `setfattr` can set too).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::gc::set_xattr;
use crate::checksum::Checksum;
use crate::store::{Store, StoreOptions};

/// What `seamfs pin --help` shows after the options.
const PIN_HELP: &str = "\
A pinned buffer is never removed by gc nor evicted from the RAM tier.

Examples:
  seamfs pin 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 --mounted ~/mnt
  setfattr -n user.seamless.pin -v 1 ~/mnt/results.npy    (pins the file's current content)
  seamfs pin --unpin HEX --store ~/.local/share/seamfs";

#[derive(clap::Args)]
#[command(after_help = PIN_HELP)]
pub struct Args {
    /// The buffer's checksum (64 hex digits).
    checksum: String,
    /// The store directory (not mounted).
    #[arg(long, required_unless_present = "mounted", conflicts_with = "mounted")]
    store: Option<PathBuf>,
    /// The mount point of the seamfs mount that serves the store.
    #[arg(long, value_name = "MOUNTPOINT")]
    mounted: Option<PathBuf>,
    /// Remove the pin instead.
    #[arg(long)]
    unpin: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let checksum = Checksum::parse_strict(&args.checksum)
        .with_context(|| format!("'{}' is not a checksum (64 hex digits)", args.checksum))?;
    match (&args.store, &args.mounted) {
        (_, Some(mountpoint)) => {
            let file = mountpoint.join("by-checksum").join(checksum.hex());
            let value: &[u8] = if args.unpin { b"0" } else { b"1" };
            set_xattr(&file, "user.seamless.pin", value)?;
        }
        (Some(store), None) => {
            let store = Store::open(store, &StoreOptions::default(), "pin a buffer")?;
            store.set_pin(&checksum, !args.unpin)?;
        }
        (None, None) => unreachable!("clap requires one"),
    }
    Ok(ExitCode::SUCCESS)
}
