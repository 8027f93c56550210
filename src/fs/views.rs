//! The `as-<celltype>/<hex>` views: a stored buffer converted to a cell type.
//!
//! The source cell type is what the buffer is (`buffer_info::detect_celltype`: `.npy` → binary,
//! mixed container → mixed, JSON → plain, UTF-8 → text, else bytes). A conversion result is
//! stored like any buffer, so a second access, here or after a restart, costs a lookup. A
//! checksum-preserving conversion gives the source checksum itself, so the view shares the
//! source's inode.
//!
//! What is served comes only from what this mount worked out itself: the source cell types it
//! detected and the conversions it ran, kept in its own tables `seamfs_celltype` and
//! `seamfs_views` of the store's `seamless.db`. The seamless-database records (`expression`
//! rows with an empty path, BufferInfo) are written too, so HTTP clients see and share them, but
//! never read back here: any local process can PUT them, and a record saying that a text
//! converts to some unrelated buffer, or that a JSON buffer is a Numpy array, must not change
//! what `as-*/` serves or the `user.seamless.celltype` xattr (issue 13). The one exception is a
//! deployment's database the user names with `--database-url`: its view results (expression rows)
//! are used when this mount has none, as Seamless workers use them, and this mount's own are
//! written there (so mount B reuses what mount A computed).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use crate::buffer_info;
use crate::celltype::CellType;
use crate::celltype::convert::{self, Output};
use crate::checksum::Checksum;
use crate::db::client::RemoteRecords;
use crate::db::{Conn, Database, DbError, ExpressionKey};
use crate::store::{StoreError, Tier};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seamfs_celltype (
    checksum CHAR(64) NOT NULL PRIMARY KEY,
    celltype TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seamfs_views (
    input CHAR(64) NOT NULL,
    target_celltype TEXT NOT NULL,
    result CHAR(64) NOT NULL,
    PRIMARY KEY (input, target_celltype)
);
";

/// Why a view cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("the store has no buffer {0}")]
    Missing(Checksum),
    #[error("{0}")]
    Impossible(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// Results and source cell types already known in this session (over the mount's own tables).
#[derive(Default)]
pub struct Views {
    results: Mutex<HashMap<(Checksum, CellType), Checksum>>,
    sources: Mutex<HashMap<Checksum, CellType>>,
    /// Conversions run (a view answered from a known result does not count).
    conversions: AtomicU64,
    /// The deployment's database named with `--database-url`, if any.
    remote: Option<RemoteRecords>,
}

impl Views {
    /// The views of a store whose `seamless.db` is `conn` (creating the mount's tables),
    /// sharing results with `remote` if given.
    pub fn open(conn: &Connection, remote: Option<RemoteRecords>) -> rusqlite::Result<Views> {
        conn.execute_batch(SCHEMA)?;
        Ok(Views {
            remote,
            ..Views::default()
        })
    }

    /// The checksum of `checksum`'s buffer viewed as `target`.
    pub fn resolve(
        &self,
        db: &Database,
        reads: &dyn Tier,
        checksum: Checksum,
        target: CellType,
    ) -> Result<Checksum, ViewError> {
        // A result garbage collection removed is computed again.
        if let Some(result) = self.known_result(db, checksum, target)?
            && reads.has(&result)?
        {
            return Ok(result);
        }
        let buffer = reads.get(&checksum)?.ok_or(ViewError::Missing(checksum))?;
        let (source, detected) = match self.known_celltype(db, &checksum) {
            Some(c) => (c, None),
            None => {
                let (celltype, info) = buffer_info::detect_celltype(buffer.as_slice());
                self.remember_celltype(checksum, celltype);
                (celltype, Some(info))
            }
        };
        let key = expression_key(checksum, source, target);
        if let Some(result) = self.remote.as_ref().and_then(|r| r.get_expression(&key))
            && reads.has(&result)?
        {
            self.results
                .lock()
                .expect("views lock")
                .insert((checksum, target), result);
            return Ok(result);
        }
        let started = std::time::Instant::now();
        let conversion = convert::convert(&buffer, source, target)
            .map_err(|e| ViewError::Impossible(e.to_string()))?;
        self.conversions.fetch_add(1, Ordering::Relaxed);
        let result = match &conversion.output {
            Output::Buffer(converted) => {
                if converted.checksum() != checksum {
                    // Born in RAM: the RAM tier keeps it, and offloads it when it evicts it.
                    reads.derived(&converted.checksum(), started.elapsed().as_secs_f64());
                    reads.put(converted)?;
                }
                converted.checksum()
            }
            Output::Reference(target) if reads.has(target)? => *target,
            Output::Reference(target) => return Err(ViewError::Missing(*target)),
        };
        if db.records_writable() {
            db.transaction(|c| {
                if let Some(info) = &detected {
                    record_celltype(c, &checksum, source)?;
                    c.merge_buffer_info(&checksum, &info.to_map())?;
                }
                for (cs, info) in conversion.facts.iter() {
                    c.merge_buffer_info(cs, &info.to_map())?;
                }
                record_view(c, &checksum, target, &result)?;
                c.set_expression(&key, &result)
            })?;
        }
        if let Some(remote) = &self.remote {
            if let Some(info) = &detected {
                remote.merge_buffer_info(&checksum, &info.to_map());
            }
            for (cs, info) in conversion.facts.iter() {
                remote.merge_buffer_info(cs, &info.to_map());
            }
            remote.set_expression(&key, &result);
        }
        self.results
            .lock()
            .expect("views lock")
            .insert((checksum, target), result);
        Ok(result)
    }

    /// Forget the results among `removed`; returns the views (source, cell type) that showed them.
    pub fn forget_results(&self, removed: &HashSet<Checksum>) -> Vec<(Checksum, CellType)> {
        let mut results = self.results.lock().expect("views lock");
        let gone: Vec<(Checksum, CellType)> = results
            .iter()
            .filter(|(_, result)| removed.contains(result))
            .map(|(view, _)| *view)
            .collect();
        for view in &gone {
            results.remove(view);
        }
        gone
    }

    /// How many conversions ran in this session.
    pub fn conversions(&self) -> u64 {
        self.conversions.load(Ordering::Relaxed)
    }

    /// A result this mount worked out before (this session, or recorded in its table).
    fn known_result(
        &self,
        db: &Database,
        checksum: Checksum,
        target: CellType,
    ) -> Result<Option<Checksum>, DbError> {
        let key = (checksum, target);
        if let Some(result) = self.results.lock().expect("views lock").get(&key) {
            return Ok(Some(*result));
        }
        let recorded = db.read(|c| recorded_view(c, &checksum, target))?;
        if let Some(result) = recorded {
            self.results.lock().expect("views lock").insert(key, result);
        }
        Ok(recorded)
    }

    /// The cell type a buffer is, if this mount detected it (this session, or recorded).
    pub fn known_celltype(&self, db: &Database, checksum: &Checksum) -> Option<CellType> {
        if let Some(c) = self.sources.lock().expect("views lock").get(checksum) {
            return Some(*c);
        }
        let celltype = db
            .read(|c| recorded_celltype(c, checksum))
            .unwrap_or_else(|e| {
                tracing::warn!(%checksum, "cannot read the recorded cell type: {e}");
                None
            })?;
        self.remember_celltype(*checksum, celltype);
        Some(celltype)
    }

    fn remember_celltype(&self, checksum: Checksum, celltype: CellType) {
        self.sources
            .lock()
            .expect("views lock")
            .insert(checksum, celltype);
    }
}

fn record_celltype(c: &Conn, checksum: &Checksum, celltype: CellType) -> Result<(), DbError> {
    c.conn()
        .prepare_cached(
            "INSERT OR REPLACE INTO seamfs_celltype (checksum, celltype) VALUES (?1, ?2)",
        )?
        .execute(params![checksum.hex(), celltype.name()])?;
    Ok(())
}

fn recorded_celltype(c: &Conn, checksum: &Checksum) -> Result<Option<CellType>, DbError> {
    let name: Option<String> = c
        .conn()
        .prepare_cached("SELECT celltype FROM seamfs_celltype WHERE checksum = ?1")?
        .query_row([checksum.hex()], |r| r.get(0))
        .optional()?;
    Ok(name.and_then(|n| n.parse().ok()))
}

fn record_view(
    c: &Conn,
    input: &Checksum,
    target: CellType,
    result: &Checksum,
) -> Result<(), DbError> {
    c.conn()
        .prepare_cached(
            "INSERT OR REPLACE INTO seamfs_views (input, target_celltype, result) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![input.hex(), target.name(), result.hex()])?;
    Ok(())
}

fn recorded_view(
    c: &Conn,
    input: &Checksum,
    target: CellType,
) -> Result<Option<Checksum>, DbError> {
    let hex: Option<String> = c
        .conn()
        .prepare_cached(
            "SELECT result FROM seamfs_views WHERE input = ?1 AND target_celltype = ?2",
        )?
        .query_row(params![input.hex(), target.name()], |r| r.get(0))
        .optional()?;
    Ok(hex.and_then(|h| Checksum::parse_strict(&h)))
}

/// The `expression` row of a view: empty path, source and target cell types.
fn expression_key(input: Checksum, source: CellType, target: CellType) -> ExpressionKey {
    ExpressionKey {
        input,
        path: serde_json::Value::Array(Vec::new()),
        celltype: source.name().to_string(),
        target_celltype: target.name().to_string(),
    }
}
