//! The fixed part of the mount: the root's fixed directories (`by-checksum/`, `as-<celltype>/`,
//! `.seamfs/`), the immutable buffer entries under them, the streamed `by-checksum/` listing and
//! the `.seamfs/stats` JSON.

use nix::errno::Errno;

use super::attr::{Attr, IMMUTABLE_TTL, Kind};
use super::error::{FsResult, store_errno};
use super::handles::DirEntry;
use super::inodes::{self, Dynamic};
use super::namespace::Namespace;
use super::views::ViewError;
use crate::celltype::CellType;
use crate::checksum::Checksum;

impl Namespace {
    pub(super) fn fixed_attr(&self, ino: u64, kind: Kind, size: u64, perm: u16) -> Attr {
        Attr::plain(ino, kind, size, perm, self.started, IMMUTABLE_TTL)
    }

    /// A stored buffer as an entry for the kernel (counted, see `lookup`).
    pub(super) fn buffer_entry(&self, checksum: Checksum) -> FsResult<Attr> {
        let size = self.buffer_size(checksum)?;
        Ok(buffer_attr(
            self.inodes.acquire(Dynamic::Buffer(checksum)),
            size,
        ))
    }

    pub(super) fn buffer_size(&self, checksum: Checksum) -> FsResult<u64> {
        self.tiers()
            .length(&checksum)
            .map_err(store_errno)?
            .ok_or(Errno::ENOENT)
    }

    /// Every stored buffer as a `by-checksum/` entry, streamed from the store.
    pub(super) fn stored_buffers(&self) -> Box<dyn Iterator<Item = DirEntry> + Send> {
        // Reported inode numbers are derived, not recorded: a listing costs no memory per entry.
        Box::new(self.tiers().list().filter_map(move |r| match r {
            Ok(checksum) => Some(DirEntry {
                ino: inodes::buffer_ino(&checksum),
                name: checksum.hex(),
                kind: Kind::File,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "listing by-checksum/: skipping an unreadable entry");
                None
            }
        }))
    }

    /// `.seamfs/stats`: counters of the store tiers and of the mount, as JSON.
    pub(super) fn stats_json(&self) -> Vec<u8> {
        let stats = serde_json::json!({
            "tiers": self.tiers().stats().tiers,
            "push": self.store.push().map(|queue| queue.stats()),
            "conversions": self.views.conversions(),
            "tree_entries": self.read_tree().len(),
            "dynamic_inodes": self.inodes.len(),
            "store": self.store.root(),
        });
        let mut out = serde_json::to_vec_pretty(&stats).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The result of viewing `checksum` as `celltype` (see `fs::views`).
    pub(super) fn view(&self, checksum: Checksum, celltype: CellType) -> FsResult<Checksum> {
        self.views.resolve(&self.db, self.tiers(), checksum, celltype).map_err(|e| match e {
            ViewError::Missing(_) => Errno::ENOENT,
            ViewError::Impossible(reason) => {
                tracing::info!(%checksum, %celltype, "as-{celltype}/{checksum}: {reason}");
                Errno::EINVAL
            }
            other => {
                tracing::error!(%checksum, %celltype, error = %other, "as-{celltype}/{checksum} failed");
                Errno::EIO
            }
        })
    }
}

/// Attributes of an immutable buffer (`by-checksum/`, `as-*/`). Content-addressed bytes have no
/// time of their own: the epoch (as in the Nix store) keeps `tar`/`cp -p` of views reproducible.
pub(super) fn buffer_attr(ino: u64, size: u64) -> Attr {
    Attr::plain(
        ino,
        Kind::File,
        size,
        0o444,
        std::time::UNIX_EPOCH,
        IMMUTABLE_TTL,
    )
}

/// The fixed directories of the root, by name.
pub(super) fn fixed_child(name: &str) -> Option<u64> {
    match name {
        inodes::BY_CHECKSUM_NAME => Some(inodes::BY_CHECKSUM),
        inodes::SEAMFS_DIR_NAME => Some(inodes::SEAMFS_DIR),
        _ => name
            .strip_prefix("as-")
            .and_then(|c| c.parse::<CellType>().ok())
            .map(inodes::as_dir),
    }
}

pub(super) fn fixed_entries() -> Vec<DirEntry> {
    let dir = |ino, name: String| DirEntry {
        ino,
        name,
        kind: Kind::Dir,
    };
    let mut out = vec![dir(inodes::BY_CHECKSUM, inodes::BY_CHECKSUM_NAME.into())];
    out.extend(
        CellType::ALL
            .iter()
            .map(|c| dir(inodes::as_dir(*c), inodes::as_dir_name(*c))),
    );
    out.push(dir(inodes::SEAMFS_DIR, inodes::SEAMFS_DIR_NAME.into()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;
    use crate::fs::namespace::LISTING_BATCH;
    use crate::fs::test_support::namespace;

    #[test]
    fn by_checksum_listing_streams_in_small_takes() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let mut expected: Vec<String> = (0..300u32)
            .map(|i| {
                let buffer = Buffer::new(i.to_le_bytes().to_vec());
                ns.store().tiers().put(&buffer).unwrap();
                buffer.checksum().hex()
            })
            .collect();
        let fh = ns.opendir(inodes::BY_CHECKSUM).unwrap();
        let mut listed = Vec::new();
        loop {
            // The kernel takes only what fits in its reply; here 7 at a time.
            let batch = ns.readdir(fh, listed.len() as u64).unwrap();
            if batch.is_empty() {
                break;
            }
            listed.extend(batch.into_iter().take(7).map(|e| e.name));
        }
        let mut names: Vec<String> = listed[2..].to_vec();
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
        // A rewind starts over.
        assert_eq!(ns.readdir(fh, 2).unwrap().len(), LISTING_BATCH);
        ns.releasedir(fh);
    }
}
