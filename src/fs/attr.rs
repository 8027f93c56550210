//! What the namespace hands the FUSE adapter: inode kinds and attributes with their cache
//! lifetimes, and how an opened file is to be cached and read.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Attribute and entry lifetime of immutable inodes (buffers, fixed directories): they never change.
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Lifetime of tree entries: every change goes through this mount, so the kernel stays coherent;
/// a short TTL still bounds the effect of anything unforeseen.
pub const TREE_TTL: Duration = Duration::from_secs(10);

/// Virtual sidecars change with their subject: never cached.
pub const VOLATILE_TTL: Duration = Duration::ZERO;

/// The kinds of inode the mount has (FIFOs, sockets and devices only as tree metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Attributes of an inode, with how long the kernel may cache them.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
    pub ttl: Duration,
    /// Owner and group; None: the mounting user's.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Device number of a device node.
    pub rdev: u32,
    /// Status change and access times; None: the mtime.
    pub ctime: Option<SystemTime>,
    pub atime: Option<SystemTime>,
    /// Link count, if not the usual (a removed file still open has 0).
    pub nlink: Option<u32>,
}

impl Attr {
    /// Attributes with the usual owner, link count and times (everything but the tree's).
    pub fn plain(
        ino: u64,
        kind: Kind,
        size: u64,
        perm: u16,
        mtime: SystemTime,
        ttl: Duration,
    ) -> Attr {
        Attr {
            ino,
            kind,
            size,
            perm,
            mtime,
            ttl,
            uid: None,
            gid: None,
            rdev: 0,
            ctime: None,
            atime: None,
            nlink: None,
        }
    }
}

/// How the kernel should cache an open file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Content never changes behind the kernel's back: keep the page cache across opens.
    Keep,
    /// Content is computed per open (virtual files): bypass the page cache.
    Direct,
    /// Default: the page cache is dropped at open.
    Normal,
    /// Content never changes but is read piecewise through the daemon (a buffer being
    /// downloaded): this open bypasses the page cache, the cache other opens built is kept.
    Streamed,
}

/// An open file: the handle, its cache mode, and a backing file the kernel may read directly
/// (FUSE passthrough) if it can.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub fh: u64,
    pub cache: CacheMode,
    pub backing: Option<PathBuf>,
}
