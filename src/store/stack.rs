//! `Store`: what a store directory is, opened the same way by every command that uses one
//! (`mount`, `fsck`, `gc`, `pin`); `RemoteStack`: the same remote tiers (`--remote`, `--push`)
//! over a buffer directory that is not a store (`seamfs hashserver DIR`).
//!
//! A store owns its tier stack (an optional RAM tier over the directory's own disk tier over an
//! optional tier below, e.g. `file://` or later a remote), its `seamless.db`, and its lock
//! (`mount.lock`, holding the owner's pid): one process at a time serves or changes a store.
//! It also owns the gate that keeps garbage collection from racing with writers (see `gc`).
//!
//! A store can also use a running Seamless deployment in place (`mount --buffers --database`):
//! the hashserver's buffer directory becomes the disk tier and seamless-database's file holds
//! the records, while the store directory keeps what is seamfs's own: the lock, `seamfs.db`
//! (the tree, claims, views, pins; the deployment file is attached to it, see
//! `Database::open_beside`), the push queue, logs. Read-only, neither is written to. Such a
//! store is only opened with its `--database` again (its tree is not in `seamless.db`), and gc
//! never removes from a deployment's buffer directory (other services' records name buffers
//! there that this store cannot see).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

use super::layered::EvictionLoop;
use super::push::{PushLoop, PushQueue, Pushing};
use super::remote::Remotes;
use super::{
    Bounded, DiskStore, Layered, MemoryTier, RamConfig, StoreError, Tier, Verdict, Writes, addr,
};
use crate::checksum::Checksum;
use crate::db::Database;

/// How a store is stacked.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// A RAM tier over the disk tier, with these caps.
    pub ram: Option<RamConfig>,
    /// The address of a tier below the disk tier (`file:///path`; see `addr`).
    pub below: Option<String>,
    /// With a tier below: the disk tier's capacity in bytes (least recently used buffers move
    /// down above it).
    pub disk_cache: Option<u64>,
    /// Read-only network tiers under the disk, tried in order (`--remote`): buffers the store
    /// lacks are downloaded into its disk tier on demand.
    pub remotes: Vec<String>,
    /// Write-through target (`--push`): every buffer committed or put is queued and uploaded.
    pub push: Option<String>,
    /// A deployment's hashserver buffer directory, used in place as the disk tier (`--buffers`).
    pub buffers: Option<PathBuf>,
    /// A deployment's seamless-database file, used in place for the records (`--database`).
    pub database: Option<PathBuf>,
    /// Write nothing to `buffers` and `database` (`mount --read-only`).
    pub deployment_read_only: bool,
}

/// An open store directory. Share it as `Arc<Store>`.
pub struct Store {
    root: PathBuf,
    disk: DiskStore,
    /// The disk tier is a deployment's buffer directory (`--buffers`).
    foreign_buffers: bool,
    /// The push queue, with `--push`.
    /// The pusher (with `--push`), which holds the queue.
    push: Option<PushLoop>,
    tiers: Arc<dyn Tier>,
    db: Database,
    /// Writers hold it shared from commit until their references are recorded; gc's removals
    /// hold it exclusively.
    gate: RwLock<()>,
    _eviction: Vec<EvictionLoop>,
    _lock: Lock,
}

/// Below this much free space a failure to open the database is put down to a full disk.
const NEARLY_FULL: u64 = 1 << 20;

/// A hint for an error opening the database when the store's filesystem is (nearly) full:
/// SQLite reports that as a bare I/O error (e.g. when it cannot grow its shared-memory file).
fn full_disk_hint(root: &Path) -> String {
    match nix::sys::statvfs::statvfs(root) {
        Ok(fs) => {
            let free = fs.blocks_available() * fs.fragment_size();
            if free < NEARLY_FULL {
                format!(
                    " (No space left on device: {} KiB free on the store's filesystem; \
                     free some space and retry)",
                    free >> 10
                )
            } else {
                String::new()
            }
        }
        Err(_) => String::new(),
    }
}

impl Store {
    /// Open (creating if needed) the store at `root`: take its lock (failing if another process
    /// holds it), open the tiers and `seamless.db`. `purpose` names the command in errors.
    pub fn open(root: &Path, options: &StoreOptions, purpose: &str) -> anyhow::Result<Store> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the store directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot open the store {}", root.display()))?;
        let lock = Lock::acquire(&root, purpose)?;
        let disk = match &options.buffers {
            Some(dir) => DiskStore::open_deployment(dir, options.deployment_read_only)?,
            None => DiskStore::open(&root)
                .with_context(|| format!("cannot open the store {}", root.display()))?,
        };
        anyhow::ensure!(
            options.buffers.is_none() || options.disk_cache.is_none(),
            "--disk-cache would move buffers out of the --buffers directory, which other \
             services use: leave one of them out"
        );
        let db = open_database(&root, options)?;
        let db_path = db.path().to_path_buf();
        db.transaction(|c| -> Result<(), crate::db::DbError> {
            c.conn().execute_batch(super::gc::PINS_SCHEMA)?;
            Ok(())
        })
        .with_context(|| {
            format!(
                "cannot prepare {}{}",
                db_path.display(),
                full_disk_hint(&root)
            )
        })?;
        let mut eviction = Vec::new();
        let mut tiers: Arc<dyn Tier> = Arc::new(disk.clone());
        if let Some(capacity) = options.disk_cache {
            anyhow::ensure!(
                options.below.is_some() || !options.remotes.is_empty(),
                "a disk cache size needs a tier below the disk to move buffers to \
                 (--below ADDRESS or --remote ADDRESS)"
            );
            tiers = Arc::new(Bounded::new(disk.clone(), capacity));
        }
        if let Some(below) = &options.below {
            let below = addr::open(below)?;
            let layered = Arc::new(Layered::new(tiers, below, Writes::ToFast));
            eviction.push(layered.start_eviction_loop(Duration::from_secs(1)));
            tiers = layered;
        }
        let (with_remotes, remote_eviction) = over_remotes(tiers, &options.remotes)?;
        tiers = with_remotes;
        eviction.extend(remote_eviction);
        if let Some(ram) = options.ram {
            let ram = Arc::new(MemoryTier::new(ram));
            let layered = Arc::new(if disk.is_read_only() {
                // Nothing goes down to a read-only deployment: view results stay in RAM.
                Layered::over_read_only(ram, tiers)
            } else {
                Layered::new(ram, tiers, Writes::ToSlow)
            });
            eviction.push(layered.start_eviction_loop(Duration::from_secs(1)));
            tiers = layered;
        }
        let (tiers, push) = pushing(tiers, options.push.as_deref(), &root)?;
        let store = Store {
            root,
            foreign_buffers: options.buffers.is_some(),
            disk,
            push,
            tiers,
            db,
            gate: RwLock::new(()),
            _eviction: eviction,
            _lock: lock,
        };
        for pin in store.pins()? {
            store.tiers.pin(&pin, true);
        }
        Ok(store)
    }

    /// The absolute path of the store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tier stack, fastest first: every read and write of buffers goes through it.
    pub fn tiers(&self) -> &Arc<dyn Tier> {
        &self.tiers
    }

    /// The push queue (with `--push`).
    pub fn push(&self) -> Option<&Arc<PushQueue>> {
        self.push.as_ref().map(PushLoop::queue)
    }

    /// The store's `seamless.db`.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Hold this from a commit until the references to the committed buffer (tree row, claim,
    /// record) are committed too: garbage collection never removes a buffer meanwhile.
    pub fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().expect("gc gate")
    }

    /// Re-hash one buffer of the store's own directory (`fsck`).
    pub fn verify(&self, checksum: &Checksum) -> Result<Verdict, StoreError> {
        self.disk.verify(checksum)
    }

    /// Move a corrupt buffer aside to `quarantine/` (`fsck`); returns where it went.
    pub fn quarantine(&self, checksum: &Checksum) -> Result<PathBuf, StoreError> {
        self.disk.quarantine(checksum)
    }

    /// Remove kept writes of earlier processes that `named` does not name (see
    /// `DiskStore::remove_orphan_kept`).
    pub fn remove_orphan_kept(
        &self,
        named: &std::collections::HashSet<PathBuf>,
    ) -> Result<usize, StoreError> {
        self.disk.remove_orphan_kept(named)
    }

    /// Temp files of dead writers removed when the store was opened.
    pub fn stale_temps_removed(&self) -> usize {
        self.disk.stale_temps_removed_at_open()
    }

    /// Wait until background removals of redundant temp files are done (a clean shutdown).
    pub fn wait_for_removals(&self) {
        self.disk.wait_for_removals();
    }

    /// The checksums of the store's own directory, lazily (`fsck`).
    pub fn own_buffers(&self) -> super::Listing {
        self.disk.list()
    }

    /// Bytes held by the store's own directory (waits for the count started at open).
    pub fn disk_bytes(&self) -> u64 {
        self.disk.wait_for_usage()
    }

    pub(super) fn gate(&self) -> &RwLock<()> {
        &self.gate
    }

    /// Whether the disk tier is a deployment's buffer directory (`--buffers`): gc refuses it.
    pub fn foreign_buffers(&self) -> bool {
        self.foreign_buffers
    }
}

/// The store's database: `seamless.db`, or, with a deployment's `--database`, `seamfs.db` with
/// that file attached. A store whose tree is in `seamfs.db` is not opened without it: its
/// `seamless.db` would look like an empty tree (and gc would collect everything).
fn open_database(root: &Path, options: &StoreOptions) -> anyhow::Result<Database> {
    let side = side_database_path(root);
    match &options.database {
        Some(records) => Database::open_beside(&side, records, !options.deployment_read_only)
            .with_context(|| format!("cannot use the database {}", records.display())),
        None if side.exists() => bail!(
            "the store {} keeps its tree in {} beside a deployment's database (it was mounted \
             with --database): mount it with the same --database; while it is mounted, \
             `seamfs gc --mounted MOUNTPOINT` and `seamfs pin --mounted` reach it",
            root.display(),
            side.display()
        ),
        None => {
            let path = database_path(root);
            Database::open(&path, true).with_context(|| {
                format!(
                    "cannot open the database {}{}",
                    path.display(),
                    full_disk_hint(root)
                )
            })
        }
    }
}

/// `<store>/seamfs.db`: seamfs's own tables when the records live in a deployment's database.
pub fn side_database_path(store_root: &Path) -> PathBuf {
    store_root.join("seamfs.db")
}

/// `tiers` with the remotes (`--remote`, tried in order) under them as a read-through cache
/// layer: what `tiers` lacks is downloaded, verified, into it. The loop moves buffers out when
/// `tiers` is bounded.
fn over_remotes(
    tiers: Arc<dyn Tier>,
    remotes: &[String],
) -> anyhow::Result<(Arc<dyn Tier>, Option<EvictionLoop>)> {
    if remotes.is_empty() {
        return Ok((tiers, None));
    }
    let remotes = remotes
        .iter()
        .map(|a| addr::open(a))
        .collect::<Result<Vec<_>, _>>()?;
    let layered = Arc::new(Layered::cache(tiers, Arc::new(Remotes::new(remotes))));
    let eviction = layered.start_eviction_loop(Duration::from_secs(1));
    Ok((layered, Some(eviction)))
}

/// `tiers` with every committed buffer queued for the push target (`--push`), the queue kept
/// in `queue_dir`, and the loop that uploads it (and holds the queue).
fn pushing(
    tiers: Arc<dyn Tier>,
    push: Option<&str>,
    queue_dir: &Path,
) -> anyhow::Result<(Arc<dyn Tier>, Option<PushLoop>)> {
    let Some(address) = push else {
        return Ok((tiers, None));
    };
    let queue = PushQueue::open(queue_dir, address)?;
    let pusher = queue.start(tiers.clone());
    let tiers = Arc::new(Pushing::new(tiers, queue));
    Ok((tiers, Some(pusher)))
}

/// A buffer directory that is not a store (`seamfs hashserver DIR`) with the remote tiers of
/// `StoreOptions` (`remotes`, `push`; the other options are the store's) stacked over it the way
/// `Store::open` stacks them over a store's disk tier.
pub struct RemoteStack {
    tiers: Arc<dyn Tier>,
    _eviction: Option<EvictionLoop>,
    _push_loop: Option<PushLoop>,
}

impl RemoteStack {
    /// `base` (the directory's tier) with `options.remotes` below and `options.push` over it;
    /// the push queue is kept in `queue_dir`.
    pub fn open(
        base: Arc<dyn Tier>,
        options: &StoreOptions,
        queue_dir: &Path,
    ) -> anyhow::Result<RemoteStack> {
        let (tiers, eviction) = over_remotes(base, &options.remotes)?;
        if options.push.is_some() {
            std::fs::create_dir_all(queue_dir)
                .with_context(|| format!("cannot create {}", queue_dir.display()))?;
        }
        let (tiers, push_loop) = pushing(tiers, options.push.as_deref(), queue_dir)?;
        Ok(RemoteStack {
            tiers,
            _eviction: eviction,
            _push_loop: push_loop,
        })
    }

    /// The stack, fastest first.
    pub fn tiers(&self) -> &Arc<dyn Tier> {
        &self.tiers
    }
}

/// `<store>/seamless.db`: the database file the tree, BufferInfo and the HTTP side share.
pub fn database_path(store_root: &Path) -> PathBuf {
    store_root.join("seamless.db")
}

/// The store lock: an exclusive `flock` on `<store>/mount.lock`, holding the owner's pid.
/// Taken by the process that serves (after `--daemon` forked) and by every command that changes
/// the store.
pub struct Lock {
    _file: Flock<File>,
}

impl Lock {
    pub fn acquire(root: &Path, purpose: &str) -> anyhow::Result<Lock> {
        let path = root.join("mount.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                bail!(
                    "cannot {purpose}: the store {} is in use by another seamfs process (pid {}); \
                     unmount it first (or, while it is mounted, use `seamfs gc --mounted MOUNTPOINT`), \
                     or pass another --store",
                    root.display(),
                    owner.trim()
                );
            }
        };
        lock.set_len(0)?;
        write!(lock, "{}", std::process::id())?;
        Ok(Lock { _file: lock })
    }
}
