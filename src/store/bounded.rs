//! `Bounded`: the disk tier with a capacity (`--disk-cache SIZE`), for a store that has a tier
//! below it. Above the capacity, the least recently used buffers are evicted (moved down by the
//! `Layered` over it, see `Evict`); pinned buffers stay. Last use is the last read or write seen
//! by this process, else the file's modification time (when it was written).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{DiskStore, Evict, Listing, Reader, Stats, StoreError, Tier, TierWrite};
use crate::checksum::Checksum;

/// A disk tier that evicts above `capacity` bytes.
pub struct Bounded {
    disk: DiskStore,
    capacity: u64,
    state: Mutex<State>,
    evictions: AtomicU64,
    offloads: AtomicU64,
}

#[derive(Default)]
struct State {
    last_used: HashMap<Checksum, SystemTime>,
    evicting: HashSet<Checksum>,
    pinned: HashSet<Checksum>,
    /// Victims the tier above could not move (a read-only remote below lacks them), and when:
    /// passed over for `PASS_OVER`, so eviction makes progress with the others.
    passed_over: HashMap<Checksum, std::time::Instant>,
}

/// How long a victim that could not be moved is not picked again.
const PASS_OVER: std::time::Duration = std::time::Duration::from_secs(30);

impl Bounded {
    pub fn new(disk: DiskStore, capacity: u64) -> Self {
        Bounded {
            disk,
            capacity,
            state: Mutex::default(),
            evictions: AtomicU64::new(0),
            offloads: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("bounded disk lock")
    }

    fn used(&self, checksum: &Checksum) {
        self.lock().last_used.insert(*checksum, SystemTime::now());
    }

    /// Candidates with their size and last use, oldest first.
    fn by_age(&self) -> Vec<(Checksum, u64, SystemTime)> {
        let mut all: Vec<(Checksum, u64, SystemTime)> = self
            .disk
            .iter()
            .filter_map(Result::ok)
            .filter_map(|cs| {
                let meta = std::fs::metadata(self.disk.path_of(&cs)).ok()?;
                let seen = self.lock().last_used.get(&cs).copied();
                let used = seen.or_else(|| meta.modified().ok())?;
                Some((cs, meta.len(), used))
            })
            .collect();
        all.sort_by_key(|(_, _, used)| *used);
        all
    }
}

impl Tier for Bounded {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        self.disk.length(checksum)
    }

    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        let found = self.disk.open_read(checksum)?;
        if found.is_some() {
            self.used(checksum);
        }
        Ok(found)
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Tier::begin_write(&self.disk)
    }

    fn resume_write(&self, path: &Path) -> Result<Option<Box<dyn TierWrite>>, StoreError> {
        self.disk.resume_write(path)
    }

    fn list(&self) -> Listing {
        self.disk.list()
    }

    fn local_path(&self, checksum: &Checksum) -> Option<PathBuf> {
        self.disk.local_path(checksum)
    }

    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        self.lock().last_used.remove(checksum);
        self.disk.remove(checksum)
    }

    fn stats(&self) -> Stats {
        let mut stats = self.disk.stats();
        if let Some(disk) = stats.tiers.first_mut() {
            disk.capacity = Some(self.capacity);
            disk.evictions = self.evictions.load(Ordering::Relaxed);
            disk.offloads = self.offloads.load(Ordering::Relaxed);
        }
        stats
    }

    fn pin(&self, checksum: &Checksum, pinned: bool) {
        let mut state = self.lock();
        if pinned {
            state.pinned.insert(*checksum);
        } else {
            state.pinned.remove(checksum);
        }
    }

    fn evictor(&self) -> Option<&dyn Evict> {
        Some(self)
    }
}

impl Evict for Bounded {
    /// Least recently used first (the tier below's cost does not change the order: every
    /// buffer costs the same per byte to fetch back from it).
    fn victims(
        &self,
        room: u64,
        spare: Option<&Checksum>,
        _cost_below: &dyn Fn(&Checksum, u64) -> f64,
    ) -> Vec<(Checksum, Reader)> {
        let Some(mut held) = self.disk.bytes() else {
            return Vec::new(); // not counted yet
        };
        let target = self.capacity.saturating_sub(room);
        if held <= target {
            return Vec::new();
        }
        let mut victims = Vec::new();
        for (checksum, size, _) in self.by_age() {
            if held <= target {
                break;
            }
            {
                let mut state = self.lock();
                let passed_over = state
                    .passed_over
                    .get(&checksum)
                    .is_some_and(|at| at.elapsed() < PASS_OVER);
                if spare == Some(&checksum)
                    || passed_over
                    || state.pinned.contains(&checksum)
                    || !state.evicting.insert(checksum)
                {
                    continue;
                }
            }
            match self.disk.map(&checksum) {
                Ok(Some(reader)) => {
                    held = held.saturating_sub(size);
                    victims.push((checksum, reader));
                }
                _ => self.kept(&checksum),
            }
        }
        victims
    }

    fn evicted(&self, checksum: &Checksum, offloaded: bool) {
        self.lock().evicting.remove(checksum);
        match self.remove(checksum) {
            Ok(true) => {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                if offloaded {
                    self.offloads.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%checksum, error = %e, "could not evict from the disk tier"),
        }
    }

    fn kept(&self, checksum: &Checksum) {
        let mut state = self.lock();
        state.evicting.remove(checksum);
        state.passed_over.retain(|_, at| at.elapsed() < PASS_OVER);
        state
            .passed_over
            .insert(*checksum, std::time::Instant::now());
    }
}
