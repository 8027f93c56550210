//! `Bounded`: the disk tier with a capacity (`--disk-cache SIZE`), for a store that has a tier
//! below it. Above the capacity, the least recently used buffers are evicted (moved down by the
//! `Layered` over it, see `Evict`); pinned buffers stay. Last use is the last read or write seen
//! by this process, else the file's modification time (when it was written).
//!
//! The buffers' sizes and last uses are listed from the directory once, when eviction first
//! needs them, and then follow the disk tier's own installs and removals (`DiskStore::
//! take_changes`): an eviction costs its victims, not a `stat` of every stored file. The index
//! is listed again whenever its byte count disagrees with the disk tier's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::disk::Change;
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
    /// Reads seen before the index was listed.
    last_used: HashMap<Checksum, SystemTime>,
    /// Every stored buffer by last use, once listed.
    ages: Option<Ages>,
    /// How many times the directory was listed for the index.
    listings: u64,
    evicting: HashSet<Checksum>,
    pinned: HashSet<Checksum>,
    /// Victims the tier above could not move (a read-only remote below lacks them), and when:
    /// passed over for `PASS_OVER`, so eviction makes progress with the others.
    passed_over: HashMap<Checksum, std::time::Instant>,
}

/// How long a victim that could not be moved is not picked again.
const PASS_OVER: std::time::Duration = std::time::Duration::from_secs(30);

/// A buffer eviction may pick.
struct Candidate {
    checksum: Checksum,
    size: u64,
    used: SystemTime,
}

/// How many candidates are taken from the index at a time.
const CANDIDATES: usize = 64;

/// The stored buffers with their sizes, oldest use first.
#[derive(Default)]
struct Ages {
    by_use: BTreeSet<(SystemTime, Checksum)>,
    of: HashMap<Checksum, (u64, SystemTime)>,
    bytes: u64,
}

impl Ages {
    fn insert(&mut self, checksum: Checksum, size: u64, used: SystemTime) {
        if self.of.contains_key(&checksum) {
            return self.touch(&checksum, used);
        }
        self.of.insert(checksum, (size, used));
        self.by_use.insert((used, checksum));
        self.bytes += size;
    }

    fn touch(&mut self, checksum: &Checksum, used: SystemTime) {
        if let Some((_, last)) = self.of.get_mut(checksum) {
            self.by_use.remove(&(*last, *checksum));
            *last = used;
            self.by_use.insert((used, *checksum));
        }
    }

    fn remove(&mut self, checksum: &Checksum) {
        if let Some((size, used)) = self.of.remove(checksum) {
            self.by_use.remove(&(used, *checksum));
            self.bytes -= size;
        }
    }

    /// Up to `n` buffers used after `after` (from the oldest when None), oldest first, with
    /// their sizes.
    fn oldest_after(&self, after: Option<(SystemTime, Checksum)>, n: usize) -> Vec<Candidate> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_use
            .range((from, Bound::Unbounded))
            .take(n)
            .map(|&(used, checksum)| Candidate {
                checksum,
                size: self.of[&checksum].0,
                used,
            })
            .collect()
    }
}

impl Bounded {
    pub fn new(disk: DiskStore, capacity: u64) -> Self {
        disk.track_changes();
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
        let now = SystemTime::now();
        let mut state = self.lock();
        match &mut state.ages {
            Some(ages) => ages.touch(checksum, now),
            None => {
                state.last_used.insert(*checksum, now);
            }
        }
    }

    /// Bring the index up to date with the disk tier (`held` bytes): apply its changes, or
    /// list it when there is no index yet or the two disagree.
    fn refresh(&self, held: u64) {
        let changes = self.disk.take_changes();
        let now = SystemTime::now();
        let mut state = self.lock();
        if let Some(ages) = &mut state.ages {
            for change in changes {
                match change {
                    Change::Installed(checksum, size) => ages.insert(checksum, size, now),
                    Change::Removed(checksum) => ages.remove(&checksum),
                }
            }
            if ages.bytes == held {
                return;
            }
            tracing::debug!(
                index = ages.bytes,
                held,
                "disk eviction index out of step: listing again"
            );
        }
        let last_used = std::mem::take(&mut state.last_used);
        drop(state);
        let ages = self.list_ages(last_used);
        let mut state = self.lock();
        state.ages = Some(ages);
        state.listings += 1;
    }

    /// Every stored buffer with its size and last use (a read seen, else its mtime).
    fn list_ages(&self, mut last_used: HashMap<Checksum, SystemTime>) -> Ages {
        let mut ages = Ages::default();
        for checksum in self.disk.iter().filter_map(Result::ok) {
            let Ok(meta) = std::fs::metadata(self.disk.path_of(&checksum)) else {
                continue;
            };
            let used = last_used.remove(&checksum).or_else(|| meta.modified().ok());
            ages.insert(checksum, meta.len(), used.unwrap_or(SystemTime::UNIX_EPOCH));
        }
        ages
    }

    /// Whether eviction may take `checksum` now (then it is marked as being evicted): not the
    /// buffer to spare, not pinned, not already going, not recently passed over.
    fn pick(&self, checksum: &Checksum, spare: Option<&Checksum>) -> bool {
        let mut state = self.lock();
        let passed_over = state
            .passed_over
            .get(checksum)
            .is_some_and(|at| at.elapsed() < PASS_OVER);
        spare != Some(checksum)
            && !passed_over
            && !state.pinned.contains(checksum)
            && state.evicting.insert(*checksum)
    }

    /// How many times the directory was listed for the eviction index.
    #[cfg(test)]
    fn listings(&self) -> u64 {
        self.lock().listings
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
        // The index drops it with the disk tier's change.
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
        self.refresh(held);
        let mut victims = Vec::new();
        let mut after = None;
        loop {
            let candidates = match &self.lock().ages {
                Some(ages) => ages.oldest_after(after, CANDIDATES),
                None => Vec::new(),
            };
            let Some(last) = candidates.last() else {
                return victims;
            };
            after = Some((last.used, last.checksum));
            for Candidate { checksum, size, .. } in candidates {
                if held <= target {
                    return victims;
                }
                if self.pick(&checksum, spare) {
                    match self.disk.map(&checksum) {
                        Ok(Some(reader)) => {
                            held = held.saturating_sub(size);
                            victims.push((checksum, reader));
                        }
                        _ => self.kept(&checksum),
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::buffer::Buffer;
    use crate::store::{Layered, Writes};

    fn buffer(seed: u8) -> Buffer {
        Buffer::new(vec![seed; 1000])
    }

    /// Least recently used first, a read counting as a use; the directory is listed once, the
    /// later evictions follow the disk tier's own installs and removals. (A put into the
    /// layered pair evicts at once, sparing the buffer just put.)
    #[test]
    fn eviction_goes_by_last_use_and_lists_the_disk_once() {
        let (dir, below_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let disk = DiskStore::open(dir.path()).unwrap();
        disk.wait_for_usage();
        let bounded = Arc::new(Bounded::new(disk, 3000));
        let below = Arc::new(DiskStore::open(below_dir.path()).unwrap());
        let layered = Layered::new(bounded.clone(), below, Writes::ToFast);
        let put = |seed| layered.put(&buffer(seed)).unwrap();
        let held = |all: &[Checksum]| -> Vec<bool> {
            all.iter().map(|c| bounded.has(c).unwrap()).collect()
        };
        let all: Vec<Checksum> = (0..3).map(put).collect();
        layered.open_read(&all[0]).unwrap().unwrap(); // now the most recently used
        let all = [all, vec![put(3)]].concat();
        assert_eq!(held(&all), [true, false, true, true]);
        let all = [all, vec![put(4)]].concat();
        assert_eq!(held(&all), [true, false, false, true, true]);
        layered.open_read(&all[0]).unwrap().unwrap();
        let all = [all, vec![put(5)]].concat();
        assert_eq!(held(&all), [true, false, false, false, true, true]);
        assert_eq!(bounded.listings(), 1);
        for checksum in &all {
            let data = layered.get(checksum).unwrap().unwrap();
            assert_eq!(data.checksum(), *checksum, "every buffer still readable");
        }
    }
}
