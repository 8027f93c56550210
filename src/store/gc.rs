//! Garbage collection and pins: `Store::gc` removes the buffers nothing references any more.
//!
//! Referenced are the empty buffer (a new file of the mount names it before its tree row is
//! committed, see `fs::tree`), the checksums of the tree (`seamfs_tree`), of the bases of kept
//! files (`seamfs_kept`, see `fs::kept`), of pending claims (`seamfs_claims`), of pins
//! (`seamfs_pins`: `seamfs pin`, `setfattr -n user.seamless.pin`), and, unless
//! `include_results`, every checksum a database record names as a result (transformations,
//! expressions, meta data, reverse and irreproducible records).
//!
//! Never racing with a writer: a buffer being written is a temp file, not yet in the tiers; a
//! writer holds `Store::writing` from its commit until the references to the new buffer are
//! committed. The removal phase holds the same gate exclusively and takes a fresh snapshot of the
//! references first, so a buffer committed since the listing is either still being written (the
//! gate waits for it) or already referenced (the snapshot has it).

use std::collections::HashSet;

use anyhow::Context;
use rusqlite::Connection;

use super::Store;
use crate::checksum::Checksum;
use crate::db::DbError;

/// The pins table, in the store's `seamless.db`.
pub const PINS_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS seamfs_pins (checksum CHAR(64) NOT NULL PRIMARY KEY);";

/// Tables and columns whose checksums always keep a buffer.
const ROOTS: &[(&str, &str)] = &[
    ("seamfs_tree", "checksum"),
    ("seamfs_claims", "checksum"),
    ("seamfs_pins", "checksum"),
    // The stored buffer a kept (not yet hashed) file is an edit of: read until it is hashed.
    ("seamfs_kept", "base"),
];

/// Database records naming a result buffer (kept unless `include_results`).
const RESULTS: &[(&str, &str)] = &[
    ("transformation", "result"),
    ("expression", "result"),
    ("meta_data", "result"),
    ("rev_transformation", "result"),
    ("irreproducible_transformation", "result"),
];

/// What `gc` is asked to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct GcOptions {
    /// Only report what would be removed.
    pub dry_run: bool,
    /// Also remove buffers that only database records name as results.
    pub include_results: bool,
}

/// What `gc` did (or would do, on a dry run).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Buffers kept because something references them.
    pub kept: u64,
    /// Buffers removed (or to be removed), with their sizes.
    pub removed: Vec<(Checksum, u64)>,
    pub bytes_freed: u64,
}

impl GcReport {
    /// A line for the user.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would free" } else { "freed" };
        format!(
            "{verb} {} bytes in {} buffers; {} referenced buffers kept",
            self.bytes_freed,
            self.removed.len(),
            self.kept
        )
    }
}

impl GcReport {
    /// One line per removed buffer (`<hex> <bytes>`), then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (checksum, size) in &self.removed {
            out.push_str(&format!("{checksum} {size}\n"));
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

impl Store {
    /// Remove the buffers nothing references (see the module doc).
    pub fn gc(&self, options: GcOptions) -> anyhow::Result<GcReport> {
        self.gc_keeping(options, &HashSet::new)
    }

    /// `gc`, also keeping what `in_use` names whenever the references are read: a mount's
    /// tree in memory, which may be ahead of the committed one (a full disk refuses commits,
    /// and gc is how space comes back).
    pub fn gc_keeping(
        &self,
        options: GcOptions,
        in_use: &dyn Fn() -> HashSet<Checksum>,
    ) -> anyhow::Result<GcReport> {
        anyhow::ensure!(
            !self.foreign_buffers(),
            "gc does not remove buffers from a deployment's buffer directory (mount --buffers): \
             the hashserver's other users and records name buffers there that this store cannot see"
        );
        let referenced = self.referenced(options.include_results, in_use)?;
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let mut candidates = Vec::new();
        for checksum in self.tiers().list() {
            let checksum = checksum?;
            if referenced.contains(&checksum) {
                report.kept += 1;
            } else {
                candidates.push(checksum);
            }
        }
        if options.dry_run {
            for checksum in candidates {
                let size = self.tiers().length(&checksum)?.unwrap_or(0);
                report.removed.push((checksum, size));
            }
        } else {
            let _exclusive = self.gate().write().expect("gc gate");
            let referenced = self.referenced(options.include_results, in_use)?;
            for checksum in candidates {
                if referenced.contains(&checksum) {
                    report.kept += 1;
                    continue;
                }
                let size = self.tiers().length(&checksum)?.unwrap_or(0);
                if self.tiers().remove(&checksum)? {
                    report.removed.push((checksum, size));
                }
            }
        }
        report.bytes_freed = report.removed.iter().map(|(_, size)| size).sum();
        // Removed files are unlinked in the background: give the space back before returning.
        self.wait_for_removals();
        tracing::info!(summary = %report.summary(), "garbage collection");
        Ok(report)
    }

    /// Pin (keep through eviction and gc) or unpin `checksum`.
    pub fn set_pin(&self, checksum: &Checksum, pinned: bool) -> anyhow::Result<()> {
        let sql = if pinned {
            "INSERT OR IGNORE INTO seamfs_pins (checksum) VALUES (?1)"
        } else {
            "DELETE FROM seamfs_pins WHERE checksum = ?1"
        };
        let changed = self.db().transaction(|c| -> Result<usize, DbError> {
            Ok(c.conn().execute(sql, [checksum.hex()])?)
        })?;
        if changed > 0 {
            self.tiers().pin(checksum, pinned);
        }
        Ok(())
    }

    /// Every pinned checksum.
    pub fn pins(&self) -> anyhow::Result<Vec<Checksum>> {
        let set = self
            .db()
            .read(|c| -> Result<HashSet<Checksum>, DbError> { column(c.conn(), ROOTS[2]) })?;
        Ok(set.into_iter().collect())
    }

    /// Whether `checksum` is pinned.
    pub fn is_pinned(&self, checksum: &Checksum) -> anyhow::Result<bool> {
        Ok(self.db().read(|c| -> Result<bool, DbError> {
            let mut statement = c
                .conn()
                .prepare_cached("SELECT 1 FROM seamfs_pins WHERE checksum = ?1")?;
            Ok(statement.exists([checksum.hex()])?)
        })?)
    }

    /// A snapshot of every referenced checksum.
    fn referenced(
        &self,
        include_results: bool,
        in_use: &dyn Fn() -> HashSet<Checksum>,
    ) -> anyhow::Result<HashSet<Checksum>> {
        let tables = ROOTS
            .iter()
            .chain(if include_results { &[][..] } else { RESULTS });
        self.db()
            .read(|c| -> Result<HashSet<Checksum>, DbError> {
                let mut all = in_use();
                all.insert(Checksum::of(b""));
                for table in tables {
                    all.extend(column(c.conn(), *table)?);
                }
                Ok(all)
            })
            .context("reading the references of the store's database")
    }
}

/// The checksums in one column (nothing if the table does not exist yet). The table may be in
/// an attached deployment database (`mount --database`), hence `pragma_table_list`.
fn column(conn: &Connection, (table, column): (&str, &str)) -> Result<HashSet<Checksum>, DbError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM pragma_table_list WHERE type = 'table' AND name = ?1")?
        .exists([table])?;
    if !exists {
        return Ok(HashSet::new());
    }
    let mut statement = conn.prepare(&format!(
        "SELECT DISTINCT \"{column}\" FROM \"{table}\" WHERE \"{column}\" IS NOT NULL"
    ))?;
    let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
    let mut set = HashSet::new();
    for hex in rows {
        if let Some(checksum) = Checksum::parse_strict(&hex?) {
            set.insert(checksum);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::buffer::Buffer;
    use crate::store::StoreOptions;
    use crate::store::Tier;

    fn store(dir: &std::path::Path) -> Arc<Store> {
        Arc::new(Store::open(dir, &StoreOptions::default(), "test").unwrap())
    }

    /// The race gc must never lose: a writer re-stores a buffer gc has already picked (it was
    /// unreferenced), and records its reference only after the commit.
    #[test]
    fn a_buffer_committed_during_gc_is_kept_once_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let buffer = Buffer::new(b"re-stored while collected".to_vec());
        let checksum = store.tiers().put(&buffer).unwrap();
        let writing = store.writing();
        store.tiers().put(&buffer).unwrap(); // the commit (content already stored)
        let collector = {
            let store = store.clone();
            std::thread::spawn(move || store.gc(GcOptions::default()).unwrap())
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!collector.is_finished(), "gc waits for the writer");
        store.set_pin(&checksum, true).unwrap(); // the writer records its reference
        drop(writing);
        let report = collector.join().unwrap();
        assert!(report.removed.is_empty(), "{report:?}");
        assert!(store.tiers().has(&checksum).unwrap());
    }

    #[test]
    fn unreferenced_buffers_go_and_pins_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let gone = store.tiers().put(&Buffer::new(vec![1u8; 100])).unwrap();
        let pinned = store.tiers().put(&Buffer::new(vec![2u8; 50])).unwrap();
        store.set_pin(&pinned, true).unwrap();
        let dry = store
            .gc(GcOptions {
                dry_run: true,
                ..GcOptions::default()
            })
            .unwrap();
        assert_eq!(dry.removed, vec![(gone, 100)]);
        assert!(store.tiers().has(&gone).unwrap());
        let report = store.gc(GcOptions::default()).unwrap();
        assert_eq!(
            (report.removed, report.bytes_freed, report.kept),
            (vec![(gone, 100)], 100, 1)
        );
        assert!(!store.tiers().has(&gone).unwrap());
        assert_eq!(store.disk_bytes(), 50);
        store.set_pin(&pinned, false).unwrap();
        assert_eq!(store.gc(GcOptions::default()).unwrap().bytes_freed, 50);
    }

    #[test]
    fn a_bounded_disk_moves_least_recently_used_buffers_below() {
        let (dir, below) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let options = StoreOptions {
            below: Some(format!("file://{}", below.path().display())),
            disk_cache: Some(2500),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), &options, "test").unwrap();
        store.disk_bytes(); // counted: eviction can run
        let buffers: Vec<Buffer> = (0..4u8).map(|i| Buffer::new(vec![i; 1000])).collect();
        for buffer in &buffers {
            store.tiers().put(buffer).unwrap();
            std::thread::sleep(Duration::from_millis(20)); // distinct write times
        }
        assert!(store.disk_bytes() <= 2500);
        let below = crate::store::DiskStore::open_folder(below.path(), None).unwrap();
        let moved: Vec<bool> = buffers
            .iter()
            .map(|b| below.length(&b.checksum()).unwrap().is_some())
            .collect();
        assert_eq!(moved, [true, true, false, false], "the oldest moved down");
        for buffer in &buffers {
            assert_eq!(
                store.tiers().get(&buffer.checksum()).unwrap().as_ref(),
                Some(buffer)
            );
        }
        let stats = store.tiers().stats();
        let disk = stats.tier("disk").unwrap();
        assert_eq!(
            (disk.capacity, disk.evictions, disk.offloads),
            (Some(2500), 2, 2)
        );
        assert_eq!(stats.tier("file").unwrap().hits, 2);
        // gc removes from every tier.
        assert_eq!(store.gc(GcOptions::default()).unwrap().bytes_freed, 4000);
        assert_eq!(below.iter().count(), 0);
    }

    #[test]
    fn the_store_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = store(dir.path());
        let err = Store::open(dir.path(), &StoreOptions::default(), "test again")
            .err()
            .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("cannot test again") && text.contains("in use"),
            "{text}"
        );
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        drop(first);
        Store::open(dir.path(), &StoreOptions::default(), "test").unwrap();
    }
}
