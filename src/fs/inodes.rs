//! Inode numbers of the mount.
//!
//! Three ranges, so that an inode number alone says what it is:
//! * tree nodes keep their SQLite row id (`1` is the root), below `FIXED_BASE`;
//! * fixed directories (`by-checksum/`, the 13 `as-<celltype>/`, `.seamfs/`) sit at `FIXED_BASE + n`;
//! * a stored buffer's inode is derived from its checksum (`BUFFER_BASE` | 63 bits of it), so a
//!   listing of a million buffers reports inode numbers without recording any; the table learns
//!   a buffer only when it is looked up. A buffer has one inode whatever name reaches it
//!   (`by-checksum/<hex>` or an `as-*` view whose result it is), so page cache and passthrough
//!   are shared;
//! * a virtual sidecar's inode is derived from its subject's tree inode (`SIDECAR_BASE` +
//!   2 × subject + kind), so sidecars need no table either;
//! * other dynamic inodes (a pending claim, and a buffer whose derived number is taken) are
//!   numbered from `COUNTER_BASE` on first use, never reusing a number during a session.
//!
//! The table holds only looked-up buffers and claims, each with its kernel lookup count: every
//! reply that hands the kernel an entry counts one (`acquire`), FORGET takes its count back
//! (`forget`), and an entry whose count reaches zero is dropped. Such an entry can always be
//! re-created from its name, and nothing else refers to it by number: open handles carry their
//! own content, and the kernel forgets no inode that has open files. Tree and fixed inodes are
//! not counted: their numbers are persisted (SQLite row ids) or constant.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::celltype::CellType;
use crate::checksum::Checksum;

pub const FIXED_BASE: u64 = 1 << 40;
pub const DYNAMIC_BASE: u64 = 1 << 41;
/// Derived sidecar inodes: `SIDECAR_BASE + 2 × subject + kind` (subjects are below `FIXED_BASE`).
const SIDECAR_BASE: u64 = DYNAMIC_BASE;
/// Counter-numbered inodes (claims, buffers whose derived number is taken).
const COUNTER_BASE: u64 = 1 << 42;
pub const BUFFER_BASE: u64 = 1 << 63;

pub const BY_CHECKSUM: u64 = FIXED_BASE + 1;
pub const SEAMFS_DIR: u64 = FIXED_BASE + 2;
pub const STATS_FILE: u64 = FIXED_BASE + 3;
pub const CLAIMS_FILE: u64 = FIXED_BASE + 4;
const AS_BASE: u64 = FIXED_BASE + 16;

/// Name of the directory of every stored buffer.
pub const BY_CHECKSUM_NAME: &str = "by-checksum";
/// Name of the directory holding the statistics file.
pub const SEAMFS_DIR_NAME: &str = ".seamfs";
/// Name of the statistics file inside `.seamfs/`.
pub const STATS_NAME: &str = "stats";
/// Name of the list of pending claims inside `.seamfs/`.
pub const CLAIMS_NAME: &str = "claims";

/// The inode of `as-<celltype>/`.
pub fn as_dir(celltype: CellType) -> u64 {
    let index = CellType::ALL
        .iter()
        .position(|c| *c == celltype)
        .expect("one of ALL");
    AS_BASE + index as u64
}

/// The cell type whose `as-<celltype>/` directory this is.
pub fn as_dir_celltype(ino: u64) -> Option<CellType> {
    ino.checked_sub(AS_BASE)
        .and_then(|i| CellType::ALL.get(i as usize))
        .copied()
}

/// The inode number a buffer gets unless another buffer took it first (63 bits of its checksum).
pub fn buffer_ino(checksum: &Checksum) -> u64 {
    let head: [u8; 8] = checksum.as_bytes()[..8]
        .try_into()
        .expect("32-byte checksum");
    BUFFER_BASE | (u64::from_be_bytes(head) >> 1)
}

/// The inode of a tree entry's virtual sidecar.
pub fn sidecar_ino(subject: u64, sidecar: Sidecar) -> u64 {
    debug_assert!(subject < FIXED_BASE, "sidecars belong to tree entries");
    let kind = match sidecar {
        Sidecar::Checksum => 0,
        Sidecar::Index => 1,
    };
    SIDECAR_BASE + 2 * subject + kind
}

/// The (subject, sidecar) a derived sidecar inode stands for.
fn sidecar_of(ino: u64) -> Option<(u64, Sidecar)> {
    let offset = ino
        .checked_sub(SIDECAR_BASE)
        .filter(|_| ino < COUNTER_BASE)?;
    let sidecar = if offset % 2 == 0 {
        Sidecar::Checksum
    } else {
        Sidecar::Index
    };
    Some((offset / 2, sidecar))
}

/// The file name of `as-<celltype>/`.
pub fn as_dir_name(celltype: CellType) -> String {
    format!("as-{celltype}")
}

/// The virtual files a tree entry has beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sidecar {
    /// `F.CHECKSUM` of a file, `D.CHECKSUM` of a directory (the checksum of `D.INDEX`).
    Checksum,
    /// `D.INDEX` of a directory.
    Index,
}

impl Sidecar {
    pub fn suffix(self) -> &'static str {
        match self {
            Sidecar::Checksum => ".CHECKSUM",
            Sidecar::Index => ".INDEX",
        }
    }

    /// Split `name` into (subject, sidecar) if it has a sidecar suffix.
    pub fn split(name: &str) -> Option<(&str, Sidecar)> {
        [Sidecar::Checksum, Sidecar::Index]
            .into_iter()
            .find_map(|s| {
                name.strip_suffix(s.suffix())
                    .filter(|stem| !stem.is_empty())
                    .map(|stem| (stem, s))
            })
    }
}

/// What a dynamic inode stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dynamic {
    /// A stored buffer, read-only.
    Buffer(Checksum),
    /// A virtual sidecar of the tree entry with this inode.
    Sidecar(u64, Sidecar),
    /// A `X.CHECKSUM` written while `X` does not exist yet: (directory inode, subject name).
    Claim(u64, String),
}

/// The table of looked-up buffers and claims (both directions), with kernel lookup counts.
#[derive(Default)]
pub struct Inodes {
    table: Mutex<Table>,
    /// Tree inodes renamed onto a sidecar name (a claim by rename): the kernel keeps the moved
    /// inode under the sidecar's name until it forgets it, so it stands for the sidecar.
    aliases: Mutex<HashMap<u64, Dynamic>>,
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, (Dynamic, u64)>,
    by_key: HashMap<Dynamic, u64>,
    /// Inodes numbered from `COUNTER_BASE` so far.
    counter: u64,
}

impl Inodes {
    /// The inode of `key` handed to the kernel in an entry reply: allocated on first use, its
    /// lookup count raised by one. A sidecar's number is derived and not counted.
    pub fn acquire(&self, key: Dynamic) -> u64 {
        if let Dynamic::Sidecar(subject, sidecar) = key {
            return sidecar_ino(subject, sidecar);
        }
        let mut table = self.table.lock().expect("inode table lock");
        let ino = match table.by_key.get(&key) {
            Some(ino) => *ino,
            None => {
                let ino = match &key {
                    Dynamic::Buffer(checksum)
                        if !table.by_ino.contains_key(&buffer_ino(checksum)) =>
                    {
                        buffer_ino(checksum)
                    }
                    _ => {
                        table.counter += 1;
                        COUNTER_BASE + table.counter
                    }
                };
                table.by_key.insert(key.clone(), ino);
                table.by_ino.insert(ino, (key, 0));
                ino
            }
        };
        table.by_ino.get_mut(&ino).expect("just found").1 += 1;
        ino
    }

    /// The kernel forgot `nlookup` lookups of `ino`; at zero the entry is dropped. Inodes that are
    /// not in the table (tree, fixed, sidecars, already dropped) are ignored.
    pub fn forget(&self, ino: u64, nlookup: u64) {
        self.aliases.lock().expect("aliases lock").remove(&ino);
        let mut table = self.table.lock().expect("inode table lock");
        let Some((key, count)) = table.by_ino.get_mut(&ino) else {
            return;
        };
        *count = count.saturating_sub(nlookup);
        if *count == 0 {
            let key = key.clone();
            table.by_ino.remove(&ino);
            table.by_key.remove(&key);
        }
    }

    /// Number of inodes in the table (looked-up buffers and claims the kernel still holds).
    pub fn len(&self) -> usize {
        self.table.lock().expect("inode table lock").by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tree inode `ino` (gone from the tree) stands for `key` from now on.
    pub fn alias(&self, ino: u64, key: Dynamic) {
        self.aliases.lock().expect("aliases lock").insert(ino, key);
    }

    pub fn is_alias(&self, ino: u64) -> bool {
        let aliases = self.aliases.lock().expect("aliases lock");
        !aliases.is_empty() && aliases.contains_key(&ino)
    }

    /// What a dynamic inode (or an alias) stands for.
    pub fn resolve(&self, ino: u64) -> Option<Dynamic> {
        if let Some(key) = self.aliases.lock().expect("aliases lock").get(&ino) {
            return Some(key.clone());
        }
        if let Some((subject, sidecar)) = sidecar_of(ino) {
            return Some(Dynamic::Sidecar(subject, sidecar));
        }
        self.table
            .lock()
            .expect("inode table lock")
            .by_ino
            .get(&ino)
            .map(|(key, _)| key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_inodes_are_stable_and_distinct() {
        let inodes = Inodes::default();
        let a = inodes.acquire(Dynamic::Buffer(Checksum::of(b"a")));
        let b = inodes.acquire(Dynamic::Sidecar(5, Sidecar::Index));
        let c = inodes.acquire(Dynamic::Claim(1, "x".into()));
        assert_ne!(a, b);
        assert_eq!(inodes.acquire(Dynamic::Buffer(Checksum::of(b"a"))), a);
        assert_eq!(inodes.resolve(b), Some(Dynamic::Sidecar(5, Sidecar::Index)));
        assert_eq!(
            inodes.resolve(sidecar_ino(5, Sidecar::Checksum)),
            Some(Dynamic::Sidecar(5, Sidecar::Checksum))
        );
        assert_eq!(inodes.resolve(c), Some(Dynamic::Claim(1, "x".into())));
        assert_eq!(a, buffer_ino(&Checksum::of(b"a")));
        assert!((DYNAMIC_BASE..COUNTER_BASE).contains(&b));
        assert!((COUNTER_BASE..BUFFER_BASE).contains(&c));
        // Sidecars are derived, not tabled.
        assert_eq!(inodes.len(), 2);
    }

    #[test]
    fn forget_drops_an_inode_when_its_lookups_are_all_forgotten() {
        let inodes = Inodes::default();
        let key = Dynamic::Buffer(Checksum::of(b"a"));
        let ino = inodes.acquire(key.clone());
        inodes.acquire(key.clone());
        inodes.acquire(key.clone());
        inodes.forget(ino, 2);
        assert_eq!(inodes.resolve(ino), Some(key.clone()));
        inodes.forget(ino, 1);
        assert_eq!(inodes.resolve(ino), None);
        assert!(inodes.is_empty());
        // Forgetting what is not tabled changes nothing; a later lookup re-creates the same number.
        inodes.forget(ino, 1);
        inodes.forget(sidecar_ino(3, Sidecar::Checksum), 1);
        assert_eq!(inodes.acquire(key), ino);
        assert_eq!(inodes.len(), 1);
    }

    #[test]
    fn counter_numbers_are_not_reused() {
        let inodes = Inodes::default();
        let claim = || Dynamic::Claim(1, "x".into());
        let first = inodes.acquire(claim());
        inodes.forget(first, 1);
        let second = inodes.acquire(claim());
        assert_ne!(first, second);
        assert_eq!(inodes.resolve(first), None);
    }

    #[test]
    fn fixed_names() {
        for c in CellType::ALL {
            assert_eq!(as_dir_celltype(as_dir(c)), Some(c));
        }
        assert_eq!(as_dir_celltype(BY_CHECKSUM), None);
        assert_eq!(
            Sidecar::split("a.txt.CHECKSUM"),
            Some(("a.txt", Sidecar::Checksum))
        );
        assert_eq!(Sidecar::split("d.INDEX"), Some(("d", Sidecar::Index)));
        assert_eq!(Sidecar::split(".CHECKSUM"), None);
        assert_eq!(Sidecar::split("plain"), None);
    }
}
