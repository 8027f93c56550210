//! Pending claims and sidecar attributes. A claim is a sidecar (`X.CHECKSUM`, `D.INDEX`,
//! `D.CHECKSUM`) written while its subject does not exist yet or is still being written: the
//! claimed checksum of `X` is kept until `X` is published (and checked against it), the claim is
//! removed, or its directory goes away. A directory claim is held until the directory matches.
//!
//! Sidecar attributes: the mode and mtime a tool set on a sidecar (`rsync -a`, `tar x`, `cp -p`),
//! kept with the checksum they were set for, so that a second `rsync` finds nothing to do; they
//! no longer apply once the sidecar's content changes.
//!
//! Claims are persisted in their own table `seamfs_claims` of the store's `seamless.db`, so a
//! restart keeps them. Not in `seamfs_tree`: a claim is no tree node (it has no inode of its own,
//! is not listed, and leaves the name `X` free), and that table's `kind` CHECK constraint could
//! not be widened in existing stores without rebuilding it. As in the tree, every change is
//! written to SQLite (in the caller's transaction) before it is applied in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use rusqlite::{Connection, params};

use super::tree::{TreeError, from_ns, to_ns};
use crate::checksum::Checksum;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seamfs_claims (
    dir INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum CHAR(64) NOT NULL,
    PRIMARY KEY (dir, name)
);
CREATE TABLE IF NOT EXISTS seamfs_sidecar_attrs (
    dir INTEGER NOT NULL,
    name TEXT NOT NULL,
    mode INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    checksum CHAR(64) NOT NULL,
    PRIMARY KEY (dir, name)
);
";

/// Mode and mtime set on a sidecar, valid while its content has `checksum`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SidecarAttr {
    pub mode: u32,
    pub mtime: SystemTime,
    pub checksum: Checksum,
}

/// The pending claims: (directory inode, subject name) → claimed checksum.
#[derive(Debug, Default)]
pub struct Claims {
    map: Mutex<HashMap<(u64, String), Checksum>>,
    /// (directory inode, sidecar name) → attributes set on that sidecar.
    attrs: Mutex<HashMap<(u64, String), SidecarAttr>>,
}

impl Claims {
    /// Load every pending claim (creating the table on first use).
    pub fn load(conn: &Connection) -> Result<Claims, TreeError> {
        conn.execute_batch(SCHEMA)?;
        let mut statement = conn.prepare("SELECT dir, name, checksum FROM seamfs_claims")?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut map = HashMap::new();
        for row in rows {
            let (dir, name, hex) = row?;
            match Checksum::parse_strict(&hex) {
                Some(checksum) => {
                    map.insert((dir as u64, name), checksum);
                }
                None => {
                    tracing::warn!(dir, %name, %hex, "ignoring a stored claim that is not a checksum")
                }
            }
        }
        Ok(Claims {
            map: Mutex::new(map),
            attrs: Mutex::new(load_attrs(conn)?),
        })
    }

    /// Take the content of `other` (a fresh load, after a failed commit).
    pub fn replace(&self, other: Claims) {
        *self.lock() = other.map.into_inner().expect("claims lock");
        *self.attrs.lock().expect("sidecar attrs lock") =
            other.attrs.into_inner().expect("sidecar attrs lock");
    }

    /// Every pending claim, sorted.
    pub fn list(&self) -> Vec<((u64, String), Checksum)> {
        let mut all: Vec<_> = self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    /// The attributes set on sidecar `name` in `dir`, if still valid for `current` content.
    pub fn attr(&self, dir: u64, name: &str, current: Checksum) -> Option<SidecarAttr> {
        let attrs = self.attrs.lock().expect("sidecar attrs lock");
        attrs
            .get(&(dir, name.to_string()))
            .filter(|a| a.checksum == current)
            .copied()
    }

    /// Whether attributes were set on sidecar `name` in `dir`, for whatever content.
    pub fn has_attr(&self, dir: u64, name: &str) -> bool {
        let attrs = self.attrs.lock().expect("sidecar attrs lock");
        !attrs.is_empty() && attrs.contains_key(&(dir, name.to_string()))
    }

    /// Record the attributes set on sidecar `name` in `dir`.
    pub fn set_attr(
        &self,
        tx: &Connection,
        dir: u64,
        name: &str,
        attr: SidecarAttr,
    ) -> Result<(), TreeError> {
        tx.execute(
            "INSERT OR REPLACE INTO seamfs_sidecar_attrs (dir, name, mode, mtime_ns, checksum) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                dir as i64,
                name,
                attr.mode,
                to_ns(attr.mtime),
                attr.checksum.hex()
            ],
        )?;
        self.attrs
            .lock()
            .expect("sidecar attrs lock")
            .insert((dir, name.to_string()), attr);
        Ok(())
    }

    /// The checksum claimed for `name` in `dir`, if any.
    pub fn get(&self, dir: u64, name: &str) -> Option<Checksum> {
        self.lock().get(&(dir, name.to_string())).copied()
    }

    pub fn contains(&self, dir: u64, name: &str) -> bool {
        self.get(dir, name).is_some()
    }

    /// Record (or replace) a claim.
    pub fn insert(
        &self,
        tx: &Connection,
        dir: u64,
        name: &str,
        checksum: Checksum,
    ) -> Result<(), TreeError> {
        tx.execute(
            "INSERT OR REPLACE INTO seamfs_claims (dir, name, checksum) VALUES (?1, ?2, ?3)",
            params![dir as i64, name, checksum.hex()],
        )?;
        self.lock().insert((dir, name.to_string()), checksum);
        Ok(())
    }

    /// Take the claim on `name` in `dir` away, returning it.
    pub fn remove(
        &self,
        tx: &Connection,
        dir: u64,
        name: &str,
    ) -> Result<Option<Checksum>, TreeError> {
        // The map mirrors the committed rows: no claim there, no row (the usual case, asked
        // at every close).
        if !self.contains(dir, name) {
            return Ok(None);
        }
        tx.prepare_cached("DELETE FROM seamfs_claims WHERE dir = ?1 AND name = ?2")?
            .execute(params![dir as i64, name])?;
        Ok(self.lock().remove(&(dir, name.to_string())))
    }

    /// Drop every claim in a directory that is gone (its inode number may be given out again).
    pub fn remove_dir(&self, tx: &Connection, dir: u64) -> Result<(), TreeError> {
        tx.execute(
            "DELETE FROM seamfs_claims WHERE dir = ?1",
            params![dir as i64],
        )?;
        tx.execute(
            "DELETE FROM seamfs_sidecar_attrs WHERE dir = ?1",
            params![dir as i64],
        )?;
        self.lock().retain(|(d, _), _| *d != dir);
        self.attrs
            .lock()
            .expect("sidecar attrs lock")
            .retain(|(d, _), _| *d != dir);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, String), Checksum>> {
        self.map.lock().expect("claims lock")
    }
}

fn load_attrs(conn: &Connection) -> Result<HashMap<(u64, String), SidecarAttr>, TreeError> {
    let mut statement =
        conn.prepare("SELECT dir, name, mode, mtime_ns, checksum FROM seamfs_sidecar_attrs")?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut attrs = HashMap::new();
    for row in rows {
        let (dir, name, mode, mtime_ns, hex) = row?;
        if let Some(checksum) = Checksum::parse_strict(&hex) {
            let attr = SidecarAttr {
                mode,
                mtime: from_ns(mtime_ns),
                checksum,
            };
            attrs.insert((dir as u64, name), attr);
        }
    }
    Ok(attrs)
}
