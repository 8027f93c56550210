//! The writable tree: directories, files (a checksum and a size) and symlinks, held in memory for
//! fast lookups and persisted row by row in SQLite (table `seamfs_tree` in the store's
//! `seamless.db`), so that a restart brings the whole tree back.
//!
//! Every mutation is written to SQLite first (inside the caller's transaction) and applied in
//! memory only once that succeeded; if the transaction then fails to commit,
//! `Namespace::transaction` reloads the tree from the committed rows, so the two never disagree.
//!
//! The one exception is a file's own writer (see `Namespace::transaction`): a new file and the
//! attributes its writer sets before closing it are applied in memory and marked unsaved
//! (`create_unsaved`, `set_attr_unsaved`); the next transaction of any kind writes those rows
//! first (`save_unsaved`), and the file's close commits one at the latest. So a `tar x` costs
//! one transaction per file instead of five.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::checksum::Checksum;

/// Inode number of the tree's root, which is also the mount's root.
pub const ROOT: u64 = 1;

/// The checksum of the empty buffer: the content of a freshly created file.
pub fn empty_checksum() -> Checksum {
    Checksum::of(b"")
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seamfs_tree (
    ino INTEGER NOT NULL PRIMARY KEY,
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('dir', 'file', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev')),
    mode INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    checksum CHAR(64),
    size INTEGER,
    target TEXT,
    uid INTEGER,
    gid INTEGER,
    rdev INTEGER,
    ctime_ns INTEGER,
    atime_ns INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS seamfs_tree_parent_name ON seamfs_tree (parent, name);
CREATE TABLE IF NOT EXISTS seamfs_links (
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    ino INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
);
";

/// What a tree node is.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// Children by name, sorted (readdir order and `.INDEX` order follow it).
    Dir(BTreeMap<String, u64>),
    File {
        checksum: Checksum,
        size: u64,
    },
    Symlink(String),
    /// A FIFO, socket or device node: metadata only (the kernel serves them, not the mount).
    Special {
        kind: Special,
        rdev: u64,
    },
}

/// The kinds of special file a tree keeps as metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Special {
    /// The `kind` column's value.
    pub fn name(self) -> &'static str {
        match self {
            Special::Fifo => "fifo",
            Special::Socket => "socket",
            Special::CharDevice => "chardev",
            Special::BlockDevice => "blockdev",
        }
    }

    fn from_name(name: &str) -> Option<Special> {
        [
            Special::Fifo,
            Special::Socket,
            Special::CharDevice,
            Special::BlockDevice,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub parent: u64,
    pub name: String,
    pub kind: NodeKind,
    /// Permission bits only (no file type bits).
    pub mode: u32,
    pub mtime: SystemTime,
    /// Last change of the entry itself (content, mode, owner, name); the mtime for rows from
    /// before it was kept.
    pub ctime: SystemTime,
    /// Last access as set by `utimensat` (the mount is `noatime`); the mtime for older rows.
    pub atime: SystemTime,
    /// Owner and group; None: the mounting user's (rows from before ownership was kept).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Node {
    /// A copy for a row: a directory's children (not part of its row) left out.
    fn without_children(&self) -> Node {
        let kind = match &self.kind {
            NodeKind::Dir(_) => NodeKind::Dir(BTreeMap::new()),
            other => other.clone(),
        };
        Node {
            parent: self.parent,
            name: self.name.clone(),
            kind,
            mode: self.mode,
            mtime: self.mtime,
            ctime: self.ctime,
            atime: self.atime,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// Why a tree operation was refused; each maps to one errno.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("no such entry")]
    NotFound,
    #[error("entry exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("a directory cannot be moved into itself")]
    Invalid,
    #[error("tree database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("tree database: {0}")]
    Database(#[from] crate::db::DbError),
}

impl TreeError {
    pub fn errno(&self) -> i32 {
        match self {
            TreeError::NotFound => libc::ENOENT,
            TreeError::Exists => libc::EEXIST,
            TreeError::NotDir => libc::ENOTDIR,
            TreeError::IsDir => libc::EISDIR,
            TreeError::NotEmpty => libc::ENOTEMPTY,
            TreeError::Invalid => libc::EINVAL,
            TreeError::Database(crate::db::DbError::Commit(e))
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                libc::ENOSPC
            }
            TreeError::Db(_) | TreeError::Database(_) => libc::EIO,
        }
    }
}

/// The in-memory tree. Mutations take the SQLite transaction that must record them.
#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
    /// Hard links: the names of a node beyond its own `parent`/`name` (rows of `seamfs_links`).
    links: HashMap<u64, Vec<(u64, String)>>,
    /// How many subdirectories each directory has (its link count is 2 more; kept, so that a
    /// `stat` of a large directory does not count them).
    subdirs: HashMap<u64, u32>,
    next_ino: u64,
    /// Changed in memory only (see the module doc), to be written by the next transaction.
    unsaved: Unsaved,
}

/// Nodes whose rows are missing (`new`) or out of date (`changed`), and those of them changed
/// since they were last written to the journal of closed files (`unjournaled`, see
/// `fs::journal`).
#[derive(Debug, Default)]
pub struct Unsaved {
    new: HashSet<u64>,
    changed: HashSet<u64>,
    unjournaled: HashSet<u64>,
}

impl Unsaved {
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.changed.is_empty()
    }
}

/// Attribute changes of one `setattr`: each field that is Some is set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttrChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

impl AttrChanges {
    pub fn is_empty(&self) -> bool {
        *self == AttrChanges::default()
    }

    fn apply(&self, node: &mut Node) {
        node.atime = self.atime.unwrap_or(node.atime);
        node.uid = self.uid.or(node.uid);
        node.gid = self.gid.or(node.gid);
        if let Some(mode) = self.mode {
            node.mode = mode & 0o7777;
        }
        node.ctime = SystemTime::now();
        if let Some(mtime) = self.mtime {
            node.mtime = mtime;
        }
    }
}

/// Create the tree table if needed (idempotent), migrating a table from before special files
/// and ownership were kept: its `kind` CHECK constraint cannot be widened in place, so the table
/// is rebuilt (in the caller's transaction), every row kept, the new columns NULL.
pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'seamfs_tree'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if existing.is_some_and(|sql| !sql.contains("atime_ns")) {
        tracing::info!("migrating the tree table: special files, owners and groups");
        conn.execute_batch(
            "ALTER TABLE seamfs_tree RENAME TO seamfs_tree_v1;
             DROP INDEX IF EXISTS seamfs_tree_parent_name;",
        )?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(
            "INSERT INTO seamfs_tree (ino, parent, name, kind, mode, mtime_ns, checksum, size, target)
                 SELECT ino, parent, name, kind, mode, mtime_ns, checksum, size, target FROM seamfs_tree_v1;
             DROP TABLE seamfs_tree_v1;",
        )?;
    }
    conn.execute_batch(SCHEMA)
}

impl Tree {
    /// Load the whole tree from SQLite (creating the root row on first use).
    pub fn load(conn: &Connection) -> Result<Tree, TreeError> {
        create_schema(conn)?;
        let root_exists: Option<i64> = conn
            .query_row("SELECT ino FROM seamfs_tree WHERE ino = ?1", [ROOT], |r| {
                r.get(0)
            })
            .optional()?;
        if root_exists.is_none() {
            conn.execute(
                "INSERT INTO seamfs_tree (ino, parent, name, kind, mode, mtime_ns) VALUES (?1, ?1, '', 'dir', ?2, ?3)",
                params![ROOT, 0o755, to_ns(SystemTime::now())],
            )?;
        }
        let mut nodes = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT ino, parent, name, kind, mode, mtime_ns, checksum, size, target, uid, gid, rdev, \
             ctime_ns, atime_ns FROM seamfs_tree",
        )?;
        let rows = stmt.query_map([], |r| {
            let ino: u64 = r.get(0)?;
            let kind: String = r.get(3)?;
            let checksum: Option<String> = r.get(6)?;
            let kind = match kind.as_str() {
                "dir" => NodeKind::Dir(BTreeMap::new()),
                "file" => NodeKind::File {
                    checksum: checksum
                        .as_deref()
                        .and_then(Checksum::parse_strict)
                        .unwrap_or_else(empty_checksum),
                    size: r.get::<_, Option<u64>>(7)?.unwrap_or(0),
                },
                other => match Special::from_name(other) {
                    Some(kind) => NodeKind::Special {
                        kind,
                        rdev: r.get::<_, Option<i64>>(11)?.unwrap_or(0) as u64,
                    },
                    None => NodeKind::Symlink(r.get::<_, Option<String>>(8)?.unwrap_or_default()),
                },
            };
            let node = Node {
                parent: r.get(1)?,
                name: r.get(2)?,
                kind,
                mode: r.get(4)?,
                mtime: from_ns(r.get(5)?),
                ctime: from_ns(r.get::<_, Option<i64>>(12)?.unwrap_or(r.get(5)?)),
                atime: from_ns(r.get::<_, Option<i64>>(13)?.unwrap_or(r.get(5)?)),
                uid: r.get(9)?,
                gid: r.get(10)?,
            };
            Ok((ino, node))
        })?;
        for row in rows {
            let (ino, node) = row?;
            nodes.insert(ino, node);
        }
        let links: Vec<(u64, u64, String)> = nodes
            .iter()
            .filter(|(ino, _)| **ino != ROOT)
            .map(|(ino, n)| (n.parent, *ino, n.name.clone()))
            .collect();
        for (parent, ino, name) in links {
            if let Some(NodeKind::Dir(children)) = nodes.get_mut(&parent).map(|p| &mut p.kind) {
                children.insert(name, ino);
            }
        }
        let next_ino = nodes.keys().max().copied().unwrap_or(ROOT) + 1;
        let mut subdirs = HashMap::new();
        for (ino, node) in &nodes {
            if *ino != ROOT && matches!(node.kind, NodeKind::Dir(_)) {
                *subdirs.entry(node.parent).or_default() += 1;
            }
        }
        let mut tree = Tree {
            nodes,
            links: HashMap::new(),
            subdirs,
            next_ino,
            unsaved: Unsaved::default(),
        };
        let mut stmt = conn.prepare("SELECT parent, name, ino FROM seamfs_links")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            let (parent, name, ino): (u64, String, u64) = row?;
            if tree.nodes.contains_key(&ino) {
                tree.insert_child(parent, &name, ino);
                tree.links.entry(ino).or_default().push((parent, name));
            }
        }
        Ok(tree)
    }

    /// How many names a node has; for a directory, its own, its `.` and each subdirectory's `..`.
    pub fn link_count(&self, ino: u64) -> u32 {
        match self.nodes.get(&ino).map(|n| &n.kind) {
            Some(NodeKind::Dir(_)) => 2 + self.subdirs.get(&ino).copied().unwrap_or(0),
            _ => 1 + self.links.get(&ino).map_or(0, |l| l.len() as u32),
        }
    }

    /// Another name `new_parent/new_name` for the file (or symlink, special file) `ino`.
    pub fn link(
        &mut self,
        tx: &Connection,
        ino: u64,
        new_parent: u64,
        new_name: &str,
    ) -> Result<(), TreeError> {
        match self.nodes.get(&ino).map(|n| &n.kind) {
            None => return Err(TreeError::NotFound),
            Some(NodeKind::Dir(_)) => return Err(TreeError::IsDir),
            Some(_) => {}
        }
        if self.children(new_parent)?.contains_key(new_name) {
            return Err(TreeError::Exists);
        }
        run(
            tx,
            "INSERT INTO seamfs_links (parent, name, ino) VALUES (?1, ?2, ?3)",
            params![new_parent, new_name, ino],
        )?;
        self.insert_child(new_parent, new_name, ino);
        self.links
            .entry(ino)
            .or_default()
            .push((new_parent, new_name.to_string()));
        self.changed(tx, ino)?;
        self.touch(tx, new_parent)
    }

    /// Drop the name `parent/name` of a node that has other names; the node stays. Its own
    /// name, if that is the one dropped, becomes one of the others.
    fn unlink_name(
        &mut self,
        tx: &Connection,
        ino: u64,
        parent: u64,
        name: &str,
    ) -> Result<(), TreeError> {
        let links = self.links.get_mut(&ino).expect("a node with other names");
        let node = self.nodes.get_mut(&ino).expect("linked nodes exist");
        let gone = if node.parent == parent && node.name == name {
            let (new_parent, new_name) = links.pop().expect("another name");
            run(
                tx,
                "UPDATE seamfs_tree SET parent = ?1, name = ?2 WHERE ino = ?3",
                params![new_parent, new_name, ino],
            )?;
            node.parent = new_parent;
            node.name = new_name.clone();
            (new_parent, new_name)
        } else {
            links.retain(|(p, n)| !(*p == parent && n == name));
            (parent, name.to_string())
        };
        if links.is_empty() {
            self.links.remove(&ino);
        }
        run(
            tx,
            "DELETE FROM seamfs_links WHERE parent = ?1 AND name = ?2",
            params![gone.0, gone.1],
        )?;
        self.remove_child(parent, name);
        self.changed(tx, ino)?;
        self.touch(tx, parent)
    }

    /// The node's status changed (ctime).
    fn changed(&mut self, tx: &Connection, ino: u64) -> Result<(), TreeError> {
        let now = SystemTime::now();
        run(
            tx,
            "UPDATE seamfs_tree SET ctime_ns = ?1 WHERE ino = ?2",
            params![to_ns(now), ino],
        )?;
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.ctime = now;
        }
        Ok(())
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<u64, TreeError> {
        self.children(parent)?
            .get(name)
            .copied()
            .ok_or(TreeError::NotFound)
    }

    /// The children of a directory, sorted by name.
    pub fn children(&self, dir: u64) -> Result<&BTreeMap<String, u64>, TreeError> {
        match &self.nodes.get(&dir).ok_or(TreeError::NotFound)?.kind {
            NodeKind::Dir(children) => Ok(children),
            _ => Err(TreeError::NotDir),
        }
    }

    /// Number of nodes (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Add a new entry under `parent`; returns its inode number.
    pub fn create(
        &mut self,
        tx: &Connection,
        parent: u64,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<u64, TreeError> {
        let (ino, node) = self.new_entry(parent, name, kind, mode, owner)?;
        insert_row(tx, ino, &node)?;
        self.attach(ino, node);
        self.touch(tx, parent)?;
        Ok(ino)
    }

    /// A new node for `name` under `parent` and the inode number it gets; nothing changes yet.
    fn new_entry(
        &self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(u64, Node), TreeError> {
        if self.children(parent)?.contains_key(name) {
            return Err(TreeError::Exists);
        }
        Ok((self.next_ino, new_node(parent, name, kind, mode, owner)))
    }

    /// Put a node made by `new_entry` into the tree (memory only).
    fn attach(&mut self, ino: u64, node: Node) {
        let (parent, name) = (node.parent, node.name.clone());
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.insert_child(parent, &name, ino);
    }

    /// `create` in memory only: the row, and the parent's new mtime, are written by the next
    /// transaction (`save_unsaved`).
    pub fn create_unsaved(
        &mut self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<u64, TreeError> {
        let (ino, node) = self.new_entry(parent, name, kind, mode, owner)?;
        let now = node.mtime;
        self.attach(ino, node);
        if let Some(dir) = self.nodes.get_mut(&parent) {
            (dir.mtime, dir.ctime) = (now, now);
        }
        self.unsaved.new.insert(ino);
        self.unsaved.changed.insert(parent);
        self.unsaved.unjournaled.extend([ino, parent]);
        Ok(ino)
    }

    /// The checksum of every file's content.
    pub fn checksums(&self) -> HashSet<Checksum> {
        self.nodes
            .values()
            .filter_map(|node| match node.kind {
                NodeKind::File { checksum, .. } => Some(checksum),
                _ => None,
            })
            .collect()
    }

    /// Whether some change is not written to SQLite yet.
    pub fn has_unsaved(&self) -> bool {
        !self.unsaved.is_empty()
    }

    /// Write every unsaved row in the caller's transaction. The rows are no longer marked
    /// unsaved; if the transaction does not commit after all, give the result to
    /// `unsaved_again` (a failed commit reloads the whole tree instead).
    pub fn save_unsaved(&mut self, tx: &Connection) -> Result<Unsaved, TreeError> {
        if self.unsaved.is_empty() {
            return Ok(Unsaved::default());
        }
        for ino in &self.unsaved.new {
            if let Some(node) = self.nodes.get(ino) {
                insert_row(tx, *ino, node)?;
            }
        }
        for ino in self.unsaved.changed.difference(&self.unsaved.new) {
            if let Some(node) = self.nodes.get(ino) {
                update_row(tx, *ino, node)?;
            }
        }
        Ok(std::mem::take(&mut self.unsaved))
    }

    /// `set_content` in memory only: the row is written by the next transaction, the journal
    /// of closed files keeps it meanwhile (see `fs::journal`).
    pub fn set_content_unsaved(
        &mut self,
        ino: u64,
        checksum: Checksum,
        size: u64,
    ) -> Result<(), TreeError> {
        let node = self.nodes.get_mut(&ino).ok_or(TreeError::NotFound)?;
        match node.kind {
            NodeKind::File { .. } => node.kind = NodeKind::File { checksum, size },
            NodeKind::Dir(_) => return Err(TreeError::IsDir),
            NodeKind::Symlink(_) | NodeKind::Special { .. } => return Err(TreeError::Invalid),
        }
        self.unsaved.changed.insert(ino);
        self.unsaved.unjournaled.insert(ino);
        Ok(())
    }

    /// Rows `save_unsaved` wrote in a transaction that was rolled back are unsaved again.
    pub fn unsaved_again(&mut self, rows: Unsaved) {
        self.unsaved.new.extend(rows.new);
        self.unsaved.changed.extend(rows.changed);
        self.unsaved.unjournaled.extend(rows.unjournaled);
    }

    /// The unsaved rows changed since they were last journaled (files still being written),
    /// as (ino, node) with the children of a directory left out.
    pub fn unjournaled(&self) -> Vec<(u64, Node)> {
        self.unsaved
            .unjournaled
            .iter()
            .filter_map(|ino| Some((*ino, self.nodes.get(ino)?.without_children())))
            .collect()
    }

    /// `unjournaled`, and those rows count as journaled from now on.
    pub fn take_unjournaled(&mut self) -> Vec<(u64, Node)> {
        let rows = self.unjournaled();
        self.unsaved.unjournaled.clear();
        rows
    }

    /// Replace the tree by the committed one (a failed commit, see `fs::journal`). Inode
    /// numbers already given out are not given out again: the kernel may still know a file
    /// by one whose row was never committed.
    pub fn reload(&mut self, conn: &Connection) -> Result<(), TreeError> {
        let given_out = self.next_ino;
        *self = Tree::load(conn)?;
        self.next_ino = self.next_ino.max(given_out);
        Ok(())
    }

    /// Put back a row after the tree was reloaded from SQLite (a failed commit, see
    /// `fs::journal`): the node takes `node`'s place and attributes, a directory keeps its
    /// children; the row is unsaved, and `journaled` or not. A node whose directory is gone
    /// is not put back.
    pub fn restore(&mut self, ino: u64, mut node: Node, journaled: bool) {
        if ino != ROOT && !self.nodes.contains_key(&node.parent) {
            return;
        }
        if journaled {
            self.unsaved.unjournaled.remove(&ino);
        } else {
            self.unsaved.unjournaled.insert(ino);
        }
        match self.nodes.get_mut(&ino) {
            Some(existing) => {
                if let (NodeKind::Dir(children), NodeKind::Dir(kept)) =
                    (&mut node.kind, &mut existing.kind)
                {
                    *children = std::mem::take(kept);
                }
                let moved = (existing.parent, existing.name.clone());
                *existing = node;
                let (parent, name) = (existing.parent, existing.name.clone());
                if moved != (parent, name.clone()) {
                    self.remove_child(moved.0, &moved.1);
                    self.insert_child(parent, &name, ino);
                }
            }
            None => {
                let (parent, name) = (node.parent, node.name.clone());
                self.nodes.insert(ino, node);
                self.insert_child(parent, &name, ino);
                self.next_ino = self.next_ino.max(ino + 1);
            }
        }
        self.unsaved.new.insert(ino);
    }

    /// Remove a file or symlink (`dir = false`) or an empty directory (`dir = true`).
    pub fn remove(
        &mut self,
        tx: &Connection,
        parent: u64,
        name: &str,
        dir: bool,
    ) -> Result<u64, TreeError> {
        let ino = self.lookup(parent, name)?;
        match (&self.nodes[&ino].kind, dir) {
            (NodeKind::Dir(children), true) if !children.is_empty() => {
                return Err(TreeError::NotEmpty);
            }
            (NodeKind::Dir(_), false) => return Err(TreeError::IsDir),
            (NodeKind::Dir(_), true) => {}
            (_, true) => return Err(TreeError::NotDir),
            (_, false) => {}
        }
        if self.links.contains_key(&ino) {
            self.unlink_name(tx, ino, parent, name)?;
            return Ok(ino);
        }
        run(tx, "DELETE FROM seamfs_tree WHERE ino = ?1", [ino])?;
        self.remove_child(parent, name);
        self.nodes.remove(&ino);
        self.subdirs.remove(&ino);
        self.touch(tx, parent)?;
        Ok(ino)
    }

    /// Move `parent/name` to `new_parent/new_name`, replacing a compatible existing target
    /// (POSIX rename). Returns the inode number of the replaced entry, if any.
    pub fn rename(
        &mut self,
        tx: &Connection,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<Option<u64>, TreeError> {
        let ino = self.lookup(parent, name)?;
        self.children(new_parent)?;
        if self.is_ancestor(ino, new_parent) {
            return Err(TreeError::Invalid);
        }
        let replaced = match self.lookup(new_parent, new_name) {
            Ok(existing) if existing == ino => return Ok(None),
            Ok(_) if no_replace => return Err(TreeError::Exists),
            Ok(existing) => {
                let is_dir = matches!(self.nodes[&existing].kind, NodeKind::Dir(_));
                if is_dir != matches!(self.nodes[&ino].kind, NodeKind::Dir(_)) {
                    return Err(if is_dir {
                        TreeError::IsDir
                    } else {
                        TreeError::NotDir
                    });
                }
                self.remove(tx, new_parent, new_name, is_dir)?;
                Some(existing)
            }
            Err(_) => None,
        };
        let now = SystemTime::now();
        let node = self.nodes.get_mut(&ino).expect("looked up above");
        if node.parent == parent && node.name == name {
            run(
                tx,
                "UPDATE seamfs_tree SET parent = ?1, name = ?2, ctime_ns = ?3 WHERE ino = ?4",
                params![new_parent, new_name, to_ns(now), ino],
            )?;
            node.parent = new_parent;
            node.name = new_name.to_string();
            node.ctime = now;
        } else {
            // One of its other names (a hard link) moves.
            run(
                tx,
                "UPDATE seamfs_links SET parent = ?1, name = ?2 WHERE parent = ?3 AND name = ?4",
                params![new_parent, new_name, parent, name],
            )?;
            for link in self.links.get_mut(&ino).into_iter().flatten() {
                if link.0 == parent && link.1 == name {
                    *link = (new_parent, new_name.to_string());
                }
            }
            self.changed(tx, ino)?;
        }
        self.remove_child(parent, name);
        self.insert_child(new_parent, new_name, ino);
        self.touch(tx, parent)?;
        self.touch(tx, new_parent)?;
        Ok(replaced)
    }

    /// A file's content changed (an unpublished write): its mtime becomes now, in memory; the
    /// row is written when the content is published.
    pub fn modified(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.mtime = SystemTime::now();
            node.ctime = node.mtime;
        }
    }

    /// Set a file's content (after its buffer was published). The mtime is that of the last
    /// write (see `modified`) or a later explicit one, as `tar` and `cp -p` set it before close.
    pub fn set_content(
        &mut self,
        tx: &Connection,
        ino: u64,
        checksum: Checksum,
        size: u64,
    ) -> Result<(), TreeError> {
        let mut node = self.nodes.get(&ino).ok_or(TreeError::NotFound)?.clone();
        match node.kind {
            NodeKind::File { .. } => node.kind = NodeKind::File { checksum, size },
            NodeKind::Dir(_) => return Err(TreeError::IsDir),
            NodeKind::Symlink(_) | NodeKind::Special { .. } => return Err(TreeError::Invalid),
        }
        self.update(tx, ino, node)
    }

    /// Change permission bits, owner, group and/or the modification and access times.
    pub fn set_attr(
        &mut self,
        tx: &Connection,
        ino: u64,
        changes: &AttrChanges,
    ) -> Result<(), TreeError> {
        let mut node = self.nodes.get(&ino).ok_or(TreeError::NotFound)?.clone();
        changes.apply(&mut node);
        self.update(tx, ino, node)
    }

    /// `set_attr` in memory only: the row is written by the next transaction.
    pub fn set_attr_unsaved(&mut self, ino: u64, changes: &AttrChanges) -> Result<(), TreeError> {
        let node = self.nodes.get_mut(&ino).ok_or(TreeError::NotFound)?;
        changes.apply(node);
        self.unsaved.changed.insert(ino);
        self.unsaved.unjournaled.insert(ino);
        Ok(())
    }

    /// The path of `ino` relative to the root, `/`-separated.
    pub fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(node) = self.nodes.get(&ino) else {
                break;
            };
            parts.push(node.name.as_str());
            ino = node.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Every regular file under `dir`, as (path relative to `dir`, checksum), in sorted order.
    pub fn files_under(&self, dir: u64) -> Result<Vec<(String, Checksum)>, TreeError> {
        let mut out = Vec::new();
        self.collect_files(dir, "", &mut out)?;
        Ok(out)
    }

    fn collect_files(
        &self,
        dir: u64,
        prefix: &str,
        out: &mut Vec<(String, Checksum)>,
    ) -> Result<(), TreeError> {
        for (name, ino) in self.children(dir)? {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match &self.nodes[ino].kind {
                NodeKind::File { checksum, .. } => out.push((path, *checksum)),
                NodeKind::Dir(_) => self.collect_files(*ino, &path, out)?,
                // A symlink to a file is that file to `seamless-checksum-index` (it follows
                // links); only links that resolve inside the tree can be followed here.
                NodeKind::Symlink(target) => {
                    if let Some(checksum) = self.linked_file(dir, target) {
                        out.push((path, checksum));
                    }
                }
                NodeKind::Special { .. } => {}
            }
        }
        Ok(())
    }

    /// The checksum of the file symlink `target` in `dir` leads to, if it leads to a tree file.
    pub fn linked_file(&self, dir: u64, target: &str) -> Option<Checksum> {
        match &self.nodes[&self.resolve_link(dir, target, 0)?].kind {
            NodeKind::File { checksum, .. } => Some(*checksum),
            _ => None,
        }
    }

    /// The node a relative symlink `target` in `dir` points to, following further links (at
    /// most 40, like the kernel). None for absolute or dangling links.
    fn resolve_link(&self, dir: u64, target: &str, depth: u32) -> Option<u64> {
        if target.starts_with('/') || depth > 40 {
            return None;
        }
        let mut at = dir;
        let mut parts = target
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .peekable();
        while let Some(part) = parts.next() {
            let next = if part == ".." {
                self.nodes.get(&at)?.parent
            } else {
                self.lookup(at, part).ok()?
            };
            at = match &self.nodes.get(&next)?.kind {
                NodeKind::Symlink(t) => self.resolve_link(at, t, depth + 1)?,
                _ => next,
            };
            if parts.peek().is_some() && !matches!(self.nodes[&at].kind, NodeKind::Dir(_)) {
                return None;
            }
        }
        Some(at)
    }

    fn update(&mut self, tx: &Connection, ino: u64, node: Node) -> Result<(), TreeError> {
        if self.unsaved.new.contains(&ino) {
            insert_row(tx, ino, &node)?;
            self.unsaved.new.remove(&ino);
        } else {
            update_row(tx, ino, &node)?;
        }
        self.unsaved.changed.remove(&ino);
        self.unsaved.unjournaled.remove(&ino);
        self.nodes.insert(ino, node);
        Ok(())
    }

    fn is_ancestor(&self, ancestor: u64, mut ino: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT {
                return false;
            }
            match self.nodes.get(&ino) {
                Some(node) => ino = node.parent,
                None => return false,
            }
        }
    }

    /// Add `name` → `ino` (which is in `nodes`) to directory `parent`.
    fn insert_child(&mut self, parent: u64, name: &str, ino: u64) {
        if let Some(NodeKind::Dir(children)) = self.nodes.get_mut(&parent).map(|p| &mut p.kind) {
            children.insert(name.to_string(), ino);
            self.subdir_moved(parent, ino, true);
        }
    }

    /// Drop `name` (whose node is still in `nodes`) from directory `parent`.
    fn remove_child(&mut self, parent: u64, name: &str) {
        if let Some(NodeKind::Dir(children)) = self.nodes.get_mut(&parent).map(|p| &mut p.kind)
            && let Some(ino) = children.remove(name)
        {
            self.subdir_moved(parent, ino, false);
        }
    }

    /// Count `child` in or out of `parent`'s subdirectories, if it is a directory.
    fn subdir_moved(&mut self, parent: u64, child: u64, into: bool) {
        if !matches!(
            self.nodes.get(&child).map(|n| &n.kind),
            Some(NodeKind::Dir(_))
        ) {
            return;
        }
        let count = self.subdirs.entry(parent).or_default();
        if into {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
        }
    }

    /// A directory's entries changed: its mtime moves, in SQLite too, so that a restart keeps
    /// it exactly.
    fn touch(&mut self, tx: &Connection, dir: u64) -> Result<(), TreeError> {
        let mtime = SystemTime::now();
        run(
            tx,
            "UPDATE seamfs_tree SET mtime_ns = ?1, ctime_ns = ?1 WHERE ino = ?2",
            params![to_ns(mtime), dir],
        )?;
        if let Some(node) = self.nodes.get_mut(&dir) {
            node.mtime = mtime;
            node.ctime = mtime;
        }
        Ok(())
    }
}

/// A node created now.
fn new_node(parent: u64, name: &str, kind: NodeKind, mode: u32, owner: Option<(u32, u32)>) -> Node {
    let now = SystemTime::now();
    Node {
        parent,
        name: name.to_string(),
        kind,
        mode: mode & 0o7777,
        mtime: now,
        ctime: now,
        atime: now,
        uid: owner.map(|o| o.0),
        gid: owner.map(|o| o.1),
    }
}

/// Run one statement through the connection's statement cache: tree statements run once or more
/// per file operation, and compiling one costs more than running it.
fn run(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// The columns of a row besides its key and its name, in the order `row_values` gives them.
fn row_values(node: &Node) -> [rusqlite::types::Value; 11] {
    use rusqlite::types::Value;
    let (kind, checksum, size, target, rdev) = match &node.kind {
        NodeKind::Dir(_) => ("dir", None, None, None, None),
        NodeKind::File { checksum, size } => {
            ("file", Some(checksum.hex()), Some(*size as i64), None, None)
        }
        NodeKind::Symlink(target) => ("symlink", None, None, Some(target.clone()), None),
        NodeKind::Special { kind, rdev } => (kind.name(), None, None, None, Some(*rdev as i64)),
    };
    [
        Value::Text(kind.to_string()),
        Value::Integer(node.mode as i64),
        Value::Integer(to_ns(node.mtime)),
        checksum.map_or(Value::Null, Value::Text),
        size.map_or(Value::Null, Value::Integer),
        target.map_or(Value::Null, Value::Text),
        node.uid.map_or(Value::Null, |u| Value::Integer(u as i64)),
        node.gid.map_or(Value::Null, |g| Value::Integer(g as i64)),
        rdev.map_or(Value::Null, Value::Integer),
        Value::Integer(to_ns(node.ctime)),
        Value::Integer(to_ns(node.atime)),
    ]
}

/// A node's whole row: its key, its place and `row_values` (what `insert_values` writes).
pub(super) fn whole_row(ino: u64, node: &Node) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let place = [
        Value::Integer(ino as i64),
        Value::Integer(node.parent as i64),
        Value::Text(node.name.clone()),
    ];
    place.into_iter().chain(row_values(node)).collect()
}

/// Write a whole row (`whole_row`), replacing the node's row and any other at its place.
pub(super) fn insert_values(
    tx: &Connection,
    row: Vec<rusqlite::types::Value>,
) -> rusqlite::Result<()> {
    run(
        tx,
        "INSERT OR REPLACE INTO seamfs_tree (ino, parent, name, kind, mode, mtime_ns, checksum, size, target, uid, gid, rdev, ctime_ns, atime_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        rusqlite::params_from_iter(row),
    )?;
    Ok(())
}

/// Write the whole row of a new node.
fn insert_row(tx: &Connection, ino: u64, node: &Node) -> rusqlite::Result<()> {
    insert_values(tx, whole_row(ino, node))
}

/// Write a node's row except its place (`parent`, `name`: only `rename` and the link
/// operations move a node), so that the `(parent, name)` index is left alone.
fn update_row(tx: &Connection, ino: u64, node: &Node) -> rusqlite::Result<()> {
    let key = rusqlite::types::Value::Integer(ino as i64);
    run(
        tx,
        "UPDATE seamfs_tree SET kind = ?2, mode = ?3, mtime_ns = ?4, checksum = ?5, size = ?6,
         target = ?7, uid = ?8, gid = ?9, rdev = ?10, ctime_ns = ?11, atime_ns = ?12 WHERE ino = ?1",
        rusqlite::params_from_iter(std::iter::once(key).chain(row_values(node))),
    )?;
    Ok(())
}

pub(super) fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

pub(super) fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tx<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> T) -> T {
        let tx = conn.transaction().unwrap();
        let out = f(&tx);
        tx.commit().unwrap();
        out
    }

    #[test]
    fn a_table_from_before_special_files_is_migrated() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE seamfs_tree (ino INTEGER NOT NULL PRIMARY KEY, parent INTEGER NOT NULL,
                 name TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('dir', 'file', 'symlink')),
                 mode INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, checksum CHAR(64),
                 size INTEGER, target TEXT);
             CREATE UNIQUE INDEX seamfs_tree_parent_name ON seamfs_tree (parent, name);
             INSERT INTO seamfs_tree VALUES (1, 1, '', 'dir', 493, 5, NULL, NULL, NULL);
             INSERT INTO seamfs_tree VALUES (2, 1, 'l', 'symlink', 511, 7, NULL, NULL, 'x');",
        )
        .unwrap();
        let mut tree = Tree::load(&conn).unwrap();
        assert_eq!(tree.get(2).unwrap().kind, NodeKind::Symlink("x".into()));
        assert_eq!(tree.get(2).unwrap().mtime, from_ns(7));
        assert_eq!(tree.get(2).unwrap().uid, None);
        let fifo = NodeKind::Special {
            kind: Special::Fifo,
            rdev: 0,
        };
        let ino = tree
            .create(&conn, ROOT, "p", fifo.clone(), 0o600, Some((7, 8)))
            .unwrap();
        let again = Tree::load(&conn).unwrap();
        assert_eq!(again.get(ino).unwrap().kind, fifo);
        assert_eq!(
            (again.get(ino).unwrap().uid, again.get(ino).unwrap().gid),
            (Some(7), Some(8))
        );
    }

    #[test]
    fn mutations_persist_across_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        let mut tree = Tree::load(&conn).unwrap();
        let file = NodeKind::File {
            checksum: Checksum::of(b"x"),
            size: 1,
        };
        let (d, f) = with_tx(&mut conn, |tx| {
            let d = tree
                .create(tx, ROOT, "d", NodeKind::Dir(BTreeMap::new()), 0o755, None)
                .unwrap();
            let f = tree.create(tx, d, "f", file.clone(), 0o644, None).unwrap();
            tree.create(tx, d, "l", NodeKind::Symlink("f".into()), 0o777, None)
                .unwrap();
            tree.rename(tx, d, "l", ROOT, "link", false).unwrap();
            let chmod = AttrChanges {
                mode: Some(0o600),
                ..AttrChanges::default()
            };
            tree.set_attr(tx, f, &chmod).unwrap();
            (d, f)
        });
        drop(conn);
        let conn = Connection::open(&path).unwrap();
        let again = Tree::load(&conn).unwrap();
        assert_eq!(again.lookup(ROOT, "d").unwrap(), d);
        assert_eq!(again.lookup(d, "f").unwrap(), f);
        assert_eq!(again.get(f).unwrap().kind, file);
        assert_eq!(again.get(f).unwrap().mode, 0o600);
        assert_eq!(
            again.get(again.lookup(ROOT, "link").unwrap()).unwrap().kind,
            NodeKind::Symlink("f".into())
        );
        assert_eq!(again.path(f), "d/f");
        for ino in [ROOT, d, f] {
            assert_eq!(
                again.get(ino).unwrap().mtime,
                tree.get(ino).unwrap().mtime,
                "times kept exactly"
            );
        }
        assert_eq!(
            again.files_under(ROOT).unwrap(),
            vec![("d/f".to_string(), Checksum::of(b"x"))]
        );
    }

    #[test]
    fn directory_link_counts_follow_subdirectories() {
        let mut conn = Connection::open_in_memory().unwrap();
        let mut tree = Tree::load(&conn).unwrap();
        let dir = || NodeKind::Dir(BTreeMap::new());
        with_tx(&mut conn, |tx| {
            let a = tree.create(tx, ROOT, "a", dir(), 0o755, None).unwrap();
            let b = tree.create(tx, ROOT, "b", dir(), 0o755, None).unwrap();
            tree.create(tx, a, "c", dir(), 0o755, None).unwrap();
            tree.create_unsaved(a, "f", NodeKind::Symlink("x".into()), 0o777, None)
                .unwrap();
            assert_eq!([ROOT, a, b].map(|d| tree.link_count(d)), [4, 3, 2]);
            tree.rename(tx, a, "c", b, "c", false).unwrap();
            assert_eq!([ROOT, a, b].map(|d| tree.link_count(d)), [4, 2, 3]);
            tree.remove(tx, b, "c", true).unwrap();
            tree.remove(tx, ROOT, "b", true).unwrap();
            assert_eq!([ROOT, a].map(|d| tree.link_count(d)), [3, 2]);
        });
        assert_eq!(Tree::load(&conn).unwrap().link_count(ROOT), 3);
    }

    #[test]
    fn posix_rules() {
        let mut conn = Connection::open_in_memory().unwrap();
        let mut tree = Tree::load(&conn).unwrap();
        with_tx(&mut conn, |tx| {
            let dir = || NodeKind::Dir(BTreeMap::new());
            let file = || NodeKind::File {
                checksum: empty_checksum(),
                size: 0,
            };
            let a = tree.create(tx, ROOT, "a", dir(), 0o755, None).unwrap();
            let b = tree.create(tx, a, "b", dir(), 0o755, None).unwrap();
            tree.create(tx, b, "f", file(), 0o644, None).unwrap();
            assert!(matches!(
                tree.create(tx, ROOT, "a", file(), 0, None),
                Err(TreeError::Exists)
            ));
            assert!(matches!(
                tree.remove(tx, ROOT, "a", true),
                Err(TreeError::NotEmpty)
            ));
            assert!(matches!(
                tree.remove(tx, ROOT, "a", false),
                Err(TreeError::IsDir)
            ));
            assert!(matches!(
                tree.remove(tx, b, "f", true),
                Err(TreeError::NotDir)
            ));
            assert!(matches!(
                tree.rename(tx, ROOT, "a", b, "a2", false),
                Err(TreeError::Invalid)
            ));
            tree.create(tx, ROOT, "g", file(), 0o644, None).unwrap();
            assert!(matches!(
                tree.rename(tx, ROOT, "g", b, "f", true),
                Err(TreeError::Exists)
            ));
            assert!(tree.rename(tx, ROOT, "g", b, "f", false).unwrap().is_some());
            assert!(matches!(
                tree.rename(tx, b, "f", ROOT, "a", false),
                Err(TreeError::IsDir)
            ));
            assert!(matches!(
                tree.lookup(b, "f").and_then(|f| tree.lookup(f, "x")),
                Err(TreeError::NotDir)
            ));
        });
    }
}
