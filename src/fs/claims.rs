//! Pending claims: an `X.CHECKSUM` written while `X` does not exist yet, kept until `X` is
//! published (and checked against it), the claim is removed, or its directory goes away.
//!
//! Claims are persisted in their own table `seamfs_claims` of the store's `seamless.db`, so a
//! restart keeps them. Not in `seamfs_tree`: a claim is no tree node (it has no inode of its own,
//! is not listed, and leaves the name `X` free), and that table's `kind` CHECK constraint could
//! not be widened in existing stores without rebuilding it. As in the tree, every change is
//! written to SQLite (in the caller's transaction) before it is applied in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::tree::TreeError;
use crate::checksum::Checksum;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seamfs_claims (
    dir INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum CHAR(64) NOT NULL,
    PRIMARY KEY (dir, name)
);
";

/// The pending claims: (directory inode, subject name) → claimed checksum.
#[derive(Debug, Default)]
pub struct Claims {
    map: Mutex<HashMap<(u64, String), Checksum>>,
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
        })
    }

    /// Take the content of `other` (a fresh load, after a failed commit).
    pub fn replace(&self, other: Claims) {
        *self.lock() = other.map.into_inner().expect("claims lock");
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
        tx.execute(
            "DELETE FROM seamfs_claims WHERE dir = ?1 AND name = ?2",
            params![dir as i64, name],
        )?;
        Ok(self.lock().remove(&(dir, name.to_string())))
    }

    /// Drop every claim in a directory that is gone (its inode number may be given out again).
    pub fn remove_dir(&self, tx: &Connection, dir: u64) -> Result<(), TreeError> {
        tx.execute(
            "DELETE FROM seamfs_claims WHERE dir = ?1",
            params![dir as i64],
        )?;
        self.lock().retain(|(d, _), _| *d != dir);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, String), Checksum>> {
        self.map.lock().expect("claims lock")
    }
}
