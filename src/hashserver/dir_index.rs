//! Which buffers a prefix directory (`<dir>/<2 hex>/`) holds, remembered per directory so that
//! `/has` with many checksums costs one `stat` per prefix directory instead of one per form and
//! checksum (three for a missing buffer).
//!
//! A remembered listing is used only while the directory's mtime (and inode) is what it was
//! when listed: every create, rename or unlink in the directory sets its mtime to the current
//! time. Because that time has the granularity of the kernel's clock tick, a directory changed
//! within the last `SETTLE` is not remembered (a later change in the same tick would leave the
//! mtime unchanged); it is answered by a `stat` per form instead, as hashserver does.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::backend::with_suffix;
use super::protocol::{FORMS, suffix};
use crate::checksum::Checksum;

/// How old a directory's last change must be before its listing is remembered.
const SETTLE: Duration = Duration::from_secs(2);
/// Checksums remembered in all; past this the memory is cleared and listings are read again.
const LIMIT: usize = 1 << 20;

/// The buffers one directory holds in some form.
type Stored = HashSet<Checksum>;

/// One remembered listing, valid while the directory is unchanged.
struct Listing {
    ino: u64,
    mtime_ns: i128,
    stored: Arc<Stored>,
}

/// Listings of prefix directories, by path.
#[derive(Default)]
pub struct DirIndex {
    listings: Mutex<HashMap<PathBuf, Listing>>,
}

/// What a look at one directory gave.
pub enum Look {
    /// The directory does not exist: none of its buffers are stored.
    Absent,
    /// A listing of it, up to date.
    Listed(Arc<Stored>),
    /// Changed too recently to trust a listing: look at each file.
    Unsettled,
}

impl Look {
    /// Whether any form of `checksum` is stored, by the listing or else a `stat` per form of
    /// `base` (the raw form's path).
    pub fn has(&self, checksum: &Checksum, base: &Path) -> bool {
        match self {
            Look::Absent => false,
            Look::Listed(stored) => stored.contains(checksum),
            Look::Unsettled => FORMS.iter().any(|&form| with_suffix(base, form).exists()),
        }
    }
}

impl DirIndex {
    /// Look at `dir`: one `stat`, and a listing when it changed since the last one.
    pub fn look(&self, dir: &Path) -> Look {
        let Ok(meta) = fs::metadata(dir) else {
            return Look::Absent;
        };
        let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        if let Some(listing) = self.listings.lock().unwrap().get(dir)
            && listing.ino == meta.ino()
            && listing.mtime_ns == mtime_ns
        {
            return Look::Listed(listing.stored.clone());
        }
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= SETTLE);
        if !settled {
            return Look::Unsettled;
        }
        let Some(stored) = list(dir) else {
            return Look::Unsettled;
        };
        let stored = Arc::new(stored);
        let mut listings = self.listings.lock().unwrap();
        let held: usize = listings.values().map(|l| l.stored.len()).sum();
        if held + stored.len() > LIMIT {
            listings.clear();
        }
        listings.insert(
            dir.to_path_buf(),
            Listing {
                ino: meta.ino(),
                mtime_ns,
                stored: stored.clone(),
            },
        );
        Look::Listed(stored)
    }
}

/// The buffers `dir` holds in some form (temp files, sidecars and locks ignored).
fn list(dir: &Path) -> Option<Stored> {
    let mut stored = Stored::new();
    for entry in fs::read_dir(dir).ok()? {
        let name = entry.ok()?.file_name();
        let Some(name) = name.to_str() else { continue };
        let (Some(hex), Some(rest)) = (name.get(..64), name.get(64..)) else {
            continue;
        };
        if FORMS.iter().any(|&f| suffix(f) == rest)
            && let Some(checksum) = Checksum::parse_strict(hex)
        {
            stored.insert(checksum);
        }
    }
    Some(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Make `dir` look settled: last changed a minute ago.
    fn settle(dir: &Path) {
        let past = SystemTime::now() - Duration::from_secs(60);
        fs::File::open(dir).unwrap().set_modified(past).unwrap();
    }

    #[test]
    fn a_settled_directory_is_listed_and_every_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (Checksum::of(b"a"), Checksum::of(b"b"), Checksum::of(b"c"));
        fs::write(dir.path().join(a.hex()), b"a").unwrap();
        fs::write(dir.path().join(format!("{}.zst", b.hex())), b"b").unwrap();
        fs::write(
            dir.path().join(format!("{}-0123456789abcdef", c.hex())),
            b"c",
        )
        .unwrap();
        settle(dir.path());
        let index = DirIndex::default();
        let base = |cs: &Checksum| dir.path().join(cs.hex());
        let look = index.look(dir.path());
        assert!(matches!(look, Look::Listed(_)));
        assert!(look.has(&a, &base(&a)) && look.has(&b, &base(&b)));
        assert!(!look.has(&c, &base(&c)), "a temp file is not a buffer");
        // A new file changes the directory: not trusted until settled, then listed again.
        fs::write(base(&c), b"c").unwrap();
        let look = index.look(dir.path());
        assert!(matches!(look, Look::Unsettled));
        assert!(look.has(&c, &base(&c)));
        settle(dir.path());
        assert!(index.look(dir.path()).has(&c, &base(&c)));
        fs::remove_file(base(&a)).unwrap();
        assert!(!index.look(dir.path()).has(&a, &base(&a)));
        assert!(matches!(index.look(&dir.path().join("gone")), Look::Absent));
    }
}
