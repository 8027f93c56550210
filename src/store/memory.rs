//! The RAM tier: buffers whose bytes were born in RAM (view results, small files just written,
//! buffers fetched from a remote tier), with seamless-core's cache semantics (spec §4).
//!
//! * An entry with no references is *weak*: kept while there is room, evicted first.
//! * `hold`/`release` (open files) are seamless-core's `incref`/`decref`: each adds 1 to the
//!   entry's interest. A pinned entry (`pin`) is never evicted.
//! * Every read adds or renews one decaying reference per checksum (`tempref`: interest 128
//!   halving every 2 s by default), which lapses below 1/128.
//! * Above the soft cap, eviction moves buffers out in ascending `cost × interest ÷ size_GB`
//!   order, where cost is what it takes to get the buffer back (the tier below's fetch cost plus
//!   0.1 per CPU-second of recomputation, seamless-core's formula). This tier only picks and
//!   forgets victims (`Evict`); the combinator over it (`Layered`) copies each to the tier below
//!   first, so eviction never loses data. A tier with nothing below never evicts.
//! * The hard cap is never exceeded: a buffer that does not fit is refused with
//!   `StoreError::Full`, and `Layered` writes it to the tier below instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::eviction::{Candidate, Clock, SystemClock, Tempref, TemprefParams, choose_victims};
use super::{Counters, Evict, Listing, Reader, Stats, StoreError, Tier, TierWrite};
use crate::buffer::Buffer;
use crate::checksum::Checksum;

/// Caps and tempref defaults of a RAM tier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RamConfig {
    /// Above this many bytes in RAM, eviction runs.
    pub soft_cap: u64,
    /// Never more than this many bytes in RAM.
    pub hard_cap: u64,
    /// Parameters of the temprefs reads add.
    pub tempref: TemprefParams,
}

impl RamConfig {
    /// Soft cap `soft`, hard cap `hard` (default: twice the soft cap).
    pub fn new(soft: u64, hard: Option<u64>) -> Self {
        RamConfig {
            soft_cap: soft,
            hard_cap: hard.unwrap_or(soft.saturating_mul(2)).max(soft),
            tempref: TemprefParams::default(),
        }
    }

    /// Defaults from the machine: soft cap 1/8 of its memory, hard cap 1/4.
    pub fn from_machine() -> Self {
        // SAFETY: sysconf only reads system constants.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let total = if pages > 0 && page > 0 {
            pages as u64 * page as u64
        } else {
            4 << 30
        };
        RamConfig::new(total / 8, Some(total / 4))
    }
}

/// Recomputation cost units per CPU-second (seamless-core's transformation cost factor).
const COST_PER_CPU_SECOND: f64 = 0.1;

#[derive(Default)]
struct Entry {
    buffer: Option<Buffer>,
    refs: u64,
    tempref: Option<Tempref>,
    last_used: u64,
    /// Picked by an eviction pass that has not finished: not a candidate again.
    evicting: bool,
    pinned: bool,
}

impl Entry {
    fn interest(&self, now: f64) -> f64 {
        self.refs as f64 + self.tempref.map_or(0.0, |t| t.current_interest(now))
    }

    fn is_referenced(&self) -> bool {
        self.refs > 0 || self.tempref.is_some() || self.pinned
    }

    fn size(&self) -> u64 {
        self.buffer.as_ref().map_or(0, |b| b.len() as u64)
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<Checksum, Entry>,
    ram_bytes: u64,
    tick: u64,
}

impl State {
    fn touch(&mut self, checksum: &Checksum) -> &mut Entry {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.entry(*checksum).or_default();
        entry.last_used = tick;
        entry
    }

    /// Forget entries that hold neither bytes nor references.
    fn drop_if_empty(&mut self, checksum: &Checksum) {
        if self
            .entries
            .get(checksum)
            .is_some_and(|e| e.buffer.is_none() && !e.is_referenced())
        {
            self.entries.remove(checksum);
        }
    }

    fn take(&mut self, checksum: &Checksum) -> bool {
        let Some(entry) = self.entries.get_mut(checksum) else {
            return false;
        };
        entry.evicting = false;
        let Some(buffer) = entry.buffer.take() else {
            return false;
        };
        self.ram_bytes -= buffer.len() as u64;
        self.drop_if_empty(checksum);
        true
    }
}

/// The RAM tier. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryTier {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    config: RamConfig,
    clock: Arc<dyn Clock>,
    recompute_seconds: Mutex<HashMap<Checksum, f64>>,
    counters: Counters,
    evictions: AtomicU64,
    offloads: AtomicU64,
    /// When temprefs were last lapsed (a pass over every entry: at most every 0.1 s).
    lapsed_at: Mutex<f64>,
}

impl MemoryTier {
    pub fn new(config: RamConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// A tier whose temprefs decay by `clock` (a `ManualClock` in tests).
    pub fn with_clock(config: RamConfig, clock: Arc<dyn Clock>) -> Self {
        MemoryTier {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                config,
                clock,
                recompute_seconds: Mutex::default(),
                counters: Counters::default(),
                evictions: AtomicU64::new(0),
                offloads: AtomicU64::new(0),
                lapsed_at: Mutex::new(f64::NEG_INFINITY),
            }),
        }
    }

    pub fn config(&self) -> &RamConfig {
        &self.inner.config
    }

    /// Bytes of buffers held in RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.lock().ram_bytes
    }

    /// Add or renew the checksum's decaying reference (`None`: the configured defaults).
    pub fn tempref(&self, checksum: &Checksum, params: Option<TemprefParams>) {
        let params = params.unwrap_or(self.inner.config.tempref);
        let now = self.inner.clock.now();
        let mut state = self.lock();
        let entry = state.touch(checksum);
        match &mut entry.tempref {
            Some(t) => t.renew(params, now),
            None => entry.tempref = Some(Tempref::new(params, now)),
        }
    }

    /// Current interest: normal references plus the decayed tempref (0 for weak or unknown).
    pub fn interest(&self, checksum: &Checksum) -> f64 {
        let now = self.inner.clock.now();
        self.lock()
            .entries
            .get(checksum)
            .map_or(0.0, |e| e.interest(now))
    }

    /// Whether the checksum still has a tempref (it lapses in an eviction pass).
    pub fn has_tempref(&self, checksum: &Checksum) -> bool {
        self.lock()
            .entries
            .get(checksum)
            .is_some_and(|e| e.tempref.is_some())
    }

    /// Keep `buffer` (no copy) if it fits under the hard cap.
    fn insert(&self, buffer: &Buffer) -> Result<(), StoreError> {
        let checksum = buffer.checksum();
        let size = buffer.len() as u64;
        let mut state = self.lock();
        if state
            .entries
            .get(&checksum)
            .is_some_and(|e| e.buffer.is_some())
        {
            state.touch(&checksum);
            return Ok(());
        }
        if state.ram_bytes + size > self.inner.config.hard_cap {
            return Err(self.full(size, state.ram_bytes));
        }
        state.ram_bytes += size;
        state.touch(&checksum).buffer = Some(buffer.clone());
        drop(state);
        self.inner.counters.put();
        Ok(())
    }

    fn full(&self, size: u64, held: u64) -> StoreError {
        StoreError::Full(format!(
            "a {size}-byte buffer does not fit in the RAM tier ({held} of its {}-byte hard cap \
             are in use); it goes to the tier below, or raise the hard cap (--ram-cache SOFT,HARD)",
            self.inner.config.hard_cap
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .expect("RAM tier lock poisoned by a panic")
    }

    fn lapse_temprefs(&self) {
        let now = self.inner.clock.now();
        {
            let mut lapsed_at = self.inner.lapsed_at.lock().expect("lapse lock");
            if now - *lapsed_at < 0.1 {
                return;
            }
            *lapsed_at = now;
        }
        let mut state = self.lock();
        let lapsed: Vec<Checksum> = state
            .entries
            .iter()
            .filter(|(_, e)| e.tempref.is_some_and(|t| t.lapsed(now)))
            .map(|(cs, _)| *cs)
            .collect();
        for cs in lapsed {
            if let Some(e) = state.entries.get_mut(&cs) {
                e.tempref = None;
            }
            state.drop_if_empty(&cs);
        }
    }
}

impl Tier for MemoryTier {
    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        Ok(self
            .lock()
            .entries
            .get(checksum)
            .and_then(|e| e.buffer.as_ref())
            .map(|b| b.len() as u64))
    }

    /// A hit renews the buffer's tempref (reads are decaying references).
    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        let found = {
            let mut state = self.lock();
            match state.entries.get(checksum) {
                Some(e) if e.buffer.is_some() => state.touch(checksum).buffer.clone(),
                _ => None,
            }
        };
        self.inner.counters.lookup(found.is_some());
        if found.is_some() {
            self.tempref(checksum, None);
        }
        Ok(found.map(Reader::Bytes))
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        Ok(Box::new(MemoryWrite {
            tier: self.clone(),
            data: Vec::new(),
        }))
    }

    fn list(&self) -> Listing {
        let held: Vec<Checksum> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.buffer.is_some())
            .map(|(cs, _)| *cs)
            .collect();
        Box::new(held.into_iter().map(Ok))
    }

    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self.lock().take(checksum))
    }

    fn stats(&self) -> Stats {
        let mut ram = self.inner.counters.snapshot("ram");
        ram.bytes = Some(self.ram_bytes());
        ram.capacity = Some(self.inner.config.soft_cap);
        ram.evictions = self.inner.evictions.load(Ordering::Relaxed);
        ram.offloads = self.inner.offloads.load(Ordering::Relaxed);
        Stats { tiers: vec![ram] }
    }

    /// RAM is free to read from.
    fn fetch_cost(&self, _checksum: &Checksum, _size: u64) -> f64 {
        0.0
    }

    fn hold(&self, checksum: &Checksum) {
        self.lock().touch(checksum).refs += 1;
    }

    fn release(&self, checksum: &Checksum) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(checksum) {
            entry.refs = entry.refs.saturating_sub(1);
        }
        state.drop_if_empty(checksum);
    }

    /// Remembered for good, like seamless-core's cost module.
    fn derived(&self, checksum: &Checksum, cpu_seconds: f64) {
        self.inner
            .recompute_seconds
            .lock()
            .expect("cost lock")
            .insert(*checksum, cpu_seconds);
    }

    fn pin(&self, checksum: &Checksum, pinned: bool) {
        let mut state = self.lock();
        state.touch(checksum).pinned = pinned;
        state.drop_if_empty(checksum);
    }

    fn evictor(&self) -> Option<&dyn Evict> {
        Some(self)
    }

    /// Keeps the very bytes (no copy).
    fn put(&self, buffer: &Buffer) -> Result<Checksum, StoreError> {
        self.insert(buffer)?;
        Ok(buffer.checksum())
    }
}

impl Evict for MemoryTier {
    fn victims(
        &self,
        room: u64,
        spare: Option<&Checksum>,
        cost_below: &dyn Fn(&Checksum, u64) -> f64,
    ) -> Vec<(Checksum, Reader)> {
        self.lapse_temprefs();
        let now = self.inner.clock.now();
        let config = &self.inner.config;
        let target = config.soft_cap.min(config.hard_cap.saturating_sub(room));
        let (current, snapshot) = {
            let state = self.lock();
            if state.ram_bytes <= target {
                return Vec::new();
            }
            let held: Vec<(Checksum, u64, f64, u64)> = state
                .entries
                .iter()
                .filter(|(cs, e)| {
                    e.buffer.is_some() && !e.evicting && !e.pinned && spare != Some(*cs)
                })
                .map(|(cs, e)| (*cs, e.size(), e.interest(now), e.last_used))
                .collect();
            (state.ram_bytes, held)
        };
        // Costs are asked outside the lock: the tier below may touch the disk to answer.
        let recompute = self
            .inner
            .recompute_seconds
            .lock()
            .expect("cost lock")
            .clone();
        let candidates = snapshot
            .into_iter()
            .map(|(checksum, size, interest, last_used)| {
                let cpu = recompute.get(&checksum).copied().unwrap_or(0.0);
                Candidate {
                    checksum,
                    size,
                    interest,
                    cost: cost_below(&checksum, size) + COST_PER_CPU_SECOND * cpu,
                    last_used,
                }
            })
            .collect();
        let chosen = choose_victims(candidates, current, target);
        let mut state = self.lock();
        chosen
            .into_iter()
            .filter_map(|victim| {
                let entry = state.entries.get_mut(&victim.checksum)?;
                if entry.evicting || entry.pinned {
                    return None;
                }
                let buffer = entry.buffer.clone()?;
                entry.evicting = true;
                Some((victim.checksum, Reader::Bytes(buffer)))
            })
            .collect()
    }

    fn evicted(&self, checksum: &Checksum, offloaded: bool) {
        if self.lock().take(checksum) {
            self.inner.evictions.fetch_add(1, Ordering::Relaxed);
            if offloaded {
                self.inner.offloads.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn kept(&self, checksum: &Checksum) {
        if let Some(entry) = self.lock().entries.get_mut(checksum) {
            entry.evicting = false;
        }
    }
}

/// A buffer being written into RAM. It may not grow past the hard cap (`StoreError::Full`), so
/// a write at a huge offset cannot exhaust memory.
struct MemoryWrite {
    tier: MemoryTier,
    data: Vec<u8>,
}

impl MemoryWrite {
    fn reserve(&mut self, len: u64) -> Result<(), StoreError> {
        if len > self.tier.inner.config.hard_cap {
            return Err(self.tier.full(len, self.tier.ram_bytes()));
        }
        if self.data.len() < len as usize {
            self.data.resize(len as usize, 0);
        }
        Ok(())
    }
}

impl TierWrite for MemoryWrite {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let end = offset.saturating_add(data.len() as u64);
        self.reserve(end)?;
        self.data[offset as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.reserve(len)?;
        self.data.truncate(len as usize);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let start = (offset as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError> {
        let buffer = Buffer::new(self.data);
        let actual = buffer.checksum();
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(StoreError::Corrupt { expected, actual });
        }
        self.tier.insert(&buffer)?;
        Ok(actual)
    }
}
