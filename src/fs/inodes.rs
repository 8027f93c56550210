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
//! * other dynamic inodes (a virtual sidecar, a pending claim, and a buffer whose derived number
//!   is taken) are numbered from `DYNAMIC_BASE` on first use.
//!
//! No inode number is reused during a session, so the kernel can cache them forever.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::celltype::CellType;
use crate::checksum::Checksum;

pub const FIXED_BASE: u64 = 1 << 40;
pub const DYNAMIC_BASE: u64 = 1 << 41;
pub const BUFFER_BASE: u64 = 1 << 63;

pub const BY_CHECKSUM: u64 = FIXED_BASE + 1;
pub const SEAMFS_DIR: u64 = FIXED_BASE + 2;
pub const STATS_FILE: u64 = FIXED_BASE + 3;
const AS_BASE: u64 = FIXED_BASE + 16;

/// Name of the directory of every stored buffer.
pub const BY_CHECKSUM_NAME: &str = "by-checksum";
/// Name of the directory holding the statistics file.
pub const SEAMFS_DIR_NAME: &str = ".seamfs";
/// Name of the statistics file inside `.seamfs/`.
pub const STATS_NAME: &str = "stats";

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

/// The table of dynamic inodes (both directions).
#[derive(Default)]
pub struct Inodes {
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, Dynamic>,
    by_key: HashMap<Dynamic, u64>,
    /// Inodes numbered from `DYNAMIC_BASE` so far.
    counter: u64,
}

impl Inodes {
    /// The inode of `key`, allocated on first use.
    pub fn get_or_assign(&self, key: Dynamic) -> u64 {
        if let Some(ino) = self
            .table
            .read()
            .expect("inode table lock")
            .by_key
            .get(&key)
        {
            return *ino;
        }
        let mut table = self.table.write().expect("inode table lock");
        if let Some(ino) = table.by_key.get(&key) {
            return *ino;
        }
        let ino = match &key {
            Dynamic::Buffer(checksum) if !table.by_ino.contains_key(&buffer_ino(checksum)) => {
                buffer_ino(checksum)
            }
            _ => {
                table.counter += 1;
                DYNAMIC_BASE + table.counter
            }
        };
        table.by_key.insert(key.clone(), ino);
        table.by_ino.insert(ino, key);
        ino
    }

    /// Number of dynamic inodes handed out.
    pub fn len(&self) -> usize {
        self.table.read().expect("inode table lock").by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a dynamic inode stands for.
    pub fn resolve(&self, ino: u64) -> Option<Dynamic> {
        self.table
            .read()
            .expect("inode table lock")
            .by_ino
            .get(&ino)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_inodes_are_stable_and_distinct() {
        let inodes = Inodes::default();
        let a = inodes.get_or_assign(Dynamic::Buffer(Checksum::of(b"a")));
        let b = inodes.get_or_assign(Dynamic::Sidecar(5, Sidecar::Index));
        assert_ne!(a, b);
        assert_eq!(inodes.get_or_assign(Dynamic::Buffer(Checksum::of(b"a"))), a);
        assert_eq!(inodes.resolve(b), Some(Dynamic::Sidecar(5, Sidecar::Index)));
        assert_eq!(a, buffer_ino(&Checksum::of(b"a")));
        assert!((DYNAMIC_BASE..BUFFER_BASE).contains(&b));
        assert_eq!(inodes.len(), 2);
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
