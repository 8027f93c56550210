//! The `as-<celltype>/<hex>` views: a stored buffer converted to a cell type.
//!
//! The source cell type is what the buffer is (`buffer_info::detect_celltype`: `.npy` → binary,
//! mixed container → mixed, JSON → plain, UTF-8 → text, else bytes), recorded as BufferInfo so
//! it is not detected twice. A conversion result is stored like any buffer and recorded in the
//! database (`expression` row with an empty path, plus the BufferInfo facts the conversion
//! learned), so a second access, here or after a restart, costs a lookup. A checksum-preserving
//! conversion gives the source checksum itself, so the view shares the source's inode.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::buffer_info::{self, BufferInfo};
use crate::celltype::CellType;
use crate::celltype::convert::{self, Output};
use crate::checksum::Checksum;
use crate::db::client::RemoteRecords;
use crate::db::{Database, DbError, ExpressionKey};
use crate::store::{StoreError, Tier};

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

/// Results and source cell types already known in this session.
#[derive(Default)]
pub struct Views {
    results: Mutex<HashMap<(Checksum, CellType), Checksum>>,
    sources: Mutex<HashMap<Checksum, CellType>>,
    /// Conversions run (a view answered from a known result does not count).
    conversions: AtomicU64,
    /// A shared seamless-database (`--database-url`): asked when the local records do not
    /// know, and told every record made here.
    remote: Option<RemoteRecords>,
}

impl Views {
    /// Views that share their records with a remote seamless-database.
    pub fn with_remote(remote: Option<RemoteRecords>) -> Self {
        Views {
            remote,
            ..Views::default()
        }
    }

    /// The checksum of `checksum`'s buffer viewed as `target`.
    pub fn resolve(
        &self,
        db: &Database,
        reads: &dyn Tier,
        checksum: Checksum,
        target: CellType,
    ) -> Result<Checksum, ViewError> {
        let known = self
            .results
            .lock()
            .expect("views lock")
            .get(&(checksum, target))
            .copied();
        // A result garbage collection removed is computed again.
        if let Some(result) = known
            && reads.has(&result)?
        {
            return Ok(result);
        }
        let buffer = reads.get(&checksum)?.ok_or(ViewError::Missing(checksum))?;
        let mut detected = None;
        let source = match self.known_celltype(db, &checksum) {
            Some(c) => c,
            None => {
                let (celltype, info) = buffer_info::detect_celltype(buffer.as_slice());
                detected = Some(info);
                self.sources
                    .lock()
                    .expect("views lock")
                    .insert(checksum, celltype);
                celltype
            }
        };
        let key = expression_key(checksum, source, target);
        let recorded = match db.get_expression(&key)? {
            Some(result) => Some(result),
            None => self.remote.as_ref().and_then(|r| r.get_expression(&key)),
        };
        if let Some(result) = recorded
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
        if db.is_writable() {
            db.transaction(|c| {
                if let Some(info) = &detected {
                    c.merge_buffer_info(&checksum, &info.to_map())?;
                }
                for (cs, info) in conversion.facts.iter() {
                    c.merge_buffer_info(cs, &info.to_map())?;
                }
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

    /// The cell type a buffer is, if known without reading it (this session, or BufferInfo).
    pub fn known_celltype(&self, db: &Database, checksum: &Checksum) -> Option<CellType> {
        if let Some(c) = self.sources.lock().expect("views lock").get(checksum) {
            return Some(*c);
        }
        let local = db.get_buffer_info(checksum).ok().flatten();
        let map = match local {
            Some(map) => map,
            None => self.remote.as_ref()?.get_buffer_info(checksum)?,
        };
        let celltype = celltype_of(&BufferInfo::from_map(&map).ok()?)?;
        self.sources
            .lock()
            .expect("views lock")
            .insert(*checksum, celltype);
        Some(celltype)
    }
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

/// The cell type `detect_celltype` would give, read back from the flags it records.
fn celltype_of(info: &BufferInfo) -> Option<CellType> {
    match (
        info.is_numpy,
        info.is_seamless_mixed,
        info.is_json,
        info.is_utf8,
    ) {
        (Some(true), _, _, _) => Some(CellType::Binary),
        (_, Some(true), _, _) => Some(CellType::Mixed),
        (_, _, Some(true), _) => Some(CellType::Plain),
        (_, _, Some(false), Some(true)) => Some(CellType::Text),
        (_, _, _, Some(false)) => Some(CellType::Bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_flags_give_back_the_detected_celltype() {
        let npy = crate::celltype::npy::MAGIC.to_vec();
        for bytes in [&b"{\"a\": 1}\n"[..], b"hello", b"\xff\xfe", b"", &npy] {
            let (celltype, info) = buffer_info::detect_celltype(bytes);
            assert_eq!(celltype_of(&info), Some(celltype), "{bytes:?}");
        }
        assert_eq!(celltype_of(&BufferInfo::with_length(3)), None);
    }
}
