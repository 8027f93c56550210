//! The RAM buffer cache, with seamless-core's semantics (spec §4) and eviction that really runs.
//!
//! * An entry with no references is *weak*: kept while there is room, evicted first.
//! * `incref`/`decref` hold an entry *strongly*; `tempref` adds one decaying reference per
//!   checksum (interest 128 halving every 2 s by default), which lapses below 1/128.
//! * Above the soft cap, eviction drops buffers from RAM in ascending `cost × interest ÷ size_GB`
//!   order, where cost is what it takes to get the buffer back (the lower tier's download cost
//!   plus 0.1 per CPU-second of recomputation, seamless-core's formula). It runs on every insert
//!   that crosses the soft cap and from a background thread (`start_eviction_loop`).
//! * A buffer the lower tier does not hold is written there before it leaves RAM (an offload), so
//!   eviction never loses data; without a lower tier nothing is evicted.
//! * The hard cap is never exceeded: an insert that cannot fit goes to the lower tier, or fails
//!   with `StoreError::Full` when there is none.
//!
//! Unlike seamless-core, evicting a referenced entry keeps its reference counts (only the bytes
//! leave RAM), so a later `decref` still balances its `incref`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::eviction::{Candidate, Clock, SystemClock, Tempref, TemprefParams, choose_victims};
use crate::buffer::Buffer;
use crate::checksum::Checksum;
use crate::store::{BufferTier, Counters, Stats, StoreError};

/// Caps and tempref defaults of a RAM cache.
#[derive(Clone, Copy, Debug)]
pub struct RamConfig {
    /// Above this many bytes in RAM, eviction runs (default 5 GiB).
    pub soft_cap: u64,
    /// Never more than this many bytes in RAM (default 50 GiB).
    pub hard_cap: u64,
    /// Parameters `tempref` uses when given none.
    pub tempref: TemprefParams,
}

impl Default for RamConfig {
    fn default() -> Self {
        RamConfig {
            soft_cap: 5 << 30,
            hard_cap: 50 << 30,
            tempref: TemprefParams::default(),
        }
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
    /// Being offloaded/evicted right now: not a candidate for another eviction pass.
    evicting: bool,
}

impl Entry {
    fn interest(&self, now: f64) -> f64 {
        self.refs as f64 + self.tempref.map_or(0.0, |t| t.current_interest(now))
    }

    fn is_referenced(&self) -> bool {
        self.refs > 0 || self.tempref.is_some()
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

    /// Store `buffer` in its entry if it has none and it fits under `cap`; false if it did not fit.
    fn insert(&mut self, buffer: &Buffer, cap: u64) -> bool {
        let checksum = buffer.checksum();
        let size = buffer.len() as u64;
        if self
            .entries
            .get(&checksum)
            .is_some_and(|e| e.buffer.is_some())
        {
            self.touch(&checksum);
            return true;
        }
        if self.ram_bytes + size > cap {
            return false;
        }
        self.ram_bytes += size;
        self.touch(&checksum).buffer = Some(buffer.clone());
        true
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
}

/// What one eviction pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvictionReport {
    /// Bytes in RAM before and after.
    pub before: u64,
    pub after: u64,
    /// Buffers dropped from RAM, in eviction order.
    pub evicted: Vec<Checksum>,
    /// Of those, the ones first written to the lower tier.
    pub offloaded: Vec<Checksum>,
}

/// The RAM tier. Share it as `Arc<RamCache>`.
pub struct RamCache {
    state: Mutex<State>,
    config: RamConfig,
    clock: Arc<dyn Clock>,
    lower: Option<Arc<dyn BufferTier>>,
    recompute_seconds: Mutex<HashMap<Checksum, f64>>,
    counters: Counters,
    evictions: AtomicU64,
    offloads: AtomicU64,
    /// Serializes eviction passes, so two passes do not pick victims from the same snapshot.
    eviction: Mutex<()>,
}

impl RamCache {
    /// A cache over `lower` (where evicted buffers go, and whose costs rank eviction).
    pub fn new(config: RamConfig, lower: Option<Arc<dyn BufferTier>>) -> Self {
        Self::with_clock(config, lower, Arc::new(SystemClock::default()))
    }

    pub fn with_clock(
        config: RamConfig,
        lower: Option<Arc<dyn BufferTier>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RamCache {
            state: Mutex::default(),
            config,
            clock,
            lower,
            recompute_seconds: Mutex::default(),
            counters: Counters::default(),
            evictions: AtomicU64::new(0),
            offloads: AtomicU64::new(0),
            eviction: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &RamConfig {
        &self.config
    }

    /// Bytes of buffers held in RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.lock().ram_bytes
    }

    /// Hold `checksum` strongly (once more). With a buffer, the bytes are kept too.
    pub fn incref(&self, checksum: &Checksum, buffer: Option<&Buffer>) -> Result<(), StoreError> {
        self.lock().touch(checksum).refs += 1;
        match buffer {
            Some(b) => self.put(b),
            None => Ok(()),
        }
    }

    /// Release one `incref`. At zero references (and no tempref) the entry becomes weak.
    pub fn decref(&self, checksum: &Checksum) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(checksum) {
            entry.refs = entry.refs.saturating_sub(1);
        }
        state.drop_if_empty(checksum);
    }

    /// Add or renew the checksum's decaying reference (`None`: the configured defaults).
    pub fn tempref(&self, checksum: &Checksum, params: Option<TemprefParams>) {
        let params = params.unwrap_or(self.config.tempref);
        let now = self.clock.now();
        let mut state = self.lock();
        let entry = state.touch(checksum);
        match &mut entry.tempref {
            Some(t) => t.renew(params, now),
            None => entry.tempref = Some(Tempref::new(params, now)),
        }
    }

    /// Current interest: normal references plus the decayed tempref (0 for weak or unknown).
    pub fn interest(&self, checksum: &Checksum) -> f64 {
        let now = self.clock.now();
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

    /// Declare that the buffer is derived and took `cpu_seconds` to compute: it becomes dearer
    /// to evict (remembered for good, like seamless-core's cost module).
    pub fn set_recompute_cost(&self, checksum: &Checksum, cpu_seconds: f64) {
        self.recompute_seconds
            .lock()
            .expect("cost lock")
            .insert(*checksum, cpu_seconds);
    }

    /// Lapse faded temprefs, then, above the soft cap, evict lowest-score buffers down to it.
    pub fn run_eviction_once(&self) -> Result<EvictionReport, StoreError> {
        let _pass = self.eviction.lock().expect("eviction lock");
        self.lapse_temprefs();
        let before = self.ram_bytes();
        let mut report = EvictionReport {
            before,
            after: before,
            ..Default::default()
        };
        let Some(lower) = &self.lower else {
            return Ok(report); // nowhere to put evicted buffers: evicting would lose them
        };
        if before <= self.config.soft_cap {
            return Ok(report);
        }
        let victims = choose_victims(
            self.candidates(lower.as_ref()),
            before,
            self.config.soft_cap,
        );
        for victim in victims {
            self.evict(lower.as_ref(), &victim.checksum, &mut report)?;
        }
        report.after = self.ram_bytes();
        Ok(report)
    }

    /// Run `run_eviction_once` every `interval` on a background thread, until the returned
    /// handle is dropped (or the cache is).
    pub fn start_eviction_loop(self: &Arc<Self>, interval: Duration) -> EvictionLoop {
        let (stop, stopped) = mpsc::channel::<()>();
        let cache: Weak<RamCache> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("seamfs-eviction".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let Some(cache) = cache.upgrade() else { break };
                    if let Err(e) = cache.run_eviction_once() {
                        tracing::warn!(error = %e, "eviction pass failed");
                    }
                }
            })
            .expect("spawning the eviction thread");
        EvictionLoop {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("RAM cache lock poisoned by a panic")
    }

    fn lapse_temprefs(&self) {
        let now = self.clock.now();
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

    /// Buffers in RAM that no other pass is evicting, with their interest and cost.
    fn candidates(&self, lower: &dyn BufferTier) -> Vec<Candidate> {
        let now = self.clock.now();
        let snapshot: Vec<(Checksum, u64, f64, u64)> = {
            let state = self.lock();
            state
                .entries
                .iter()
                .filter(|(_, e)| e.buffer.is_some() && !e.evicting)
                .map(|(cs, e)| (*cs, e.size(), e.interest(now), e.last_used))
                .collect()
        };
        // Costs are asked outside the lock: a tier may touch the disk to answer.
        let recompute = self.recompute_seconds.lock().expect("cost lock").clone();
        snapshot
            .into_iter()
            .map(|(checksum, size, interest, last_used)| {
                let cpu = recompute.get(&checksum).copied().unwrap_or(0.0);
                let cost = lower.fetch_cost(&checksum, size) + COST_PER_CPU_SECOND * cpu;
                Candidate {
                    checksum,
                    size,
                    interest,
                    cost,
                    last_used,
                }
            })
            .collect()
    }

    /// Drop one buffer from RAM, writing it to the lower tier first if that lacks it.
    fn evict(
        &self,
        lower: &dyn BufferTier,
        checksum: &Checksum,
        report: &mut EvictionReport,
    ) -> Result<(), StoreError> {
        let buffer = {
            let mut state = self.lock();
            let Some(entry) = state.entries.get_mut(checksum) else {
                return Ok(());
            };
            let Some(buffer) = entry.buffer.clone() else {
                return Ok(());
            };
            entry.evicting = true;
            buffer
        };
        // The bytes stay counted in RAM while they are written out, so the hard cap holds.
        let offloaded = match lower.has(checksum).and_then(|has| {
            if has {
                Ok(false)
            } else {
                lower.put(&buffer).map(|()| true)
            }
        }) {
            Ok(offloaded) => offloaded,
            Err(e) => {
                if let Some(entry) = self.lock().entries.get_mut(checksum) {
                    entry.evicting = false;
                }
                return Err(e);
            }
        };
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(checksum) {
            entry.evicting = false;
            if entry.buffer.take().is_some() {
                state.ram_bytes -= buffer.len() as u64;
            }
        }
        state.drop_if_empty(checksum);
        drop(state);
        self.evictions.fetch_add(1, Ordering::Relaxed);
        report.evicted.push(*checksum);
        if offloaded {
            self.offloads.fetch_add(1, Ordering::Relaxed);
            report.offloaded.push(*checksum);
        }
        Ok(())
    }

    /// The buffer cannot fit under the hard cap: write it to the lower tier, or refuse.
    fn spill(&self, buffer: &Buffer) -> Result<(), StoreError> {
        let Some(lower) = &self.lower else {
            return Err(StoreError::Full(format!(
                "a {}-byte buffer does not fit in the RAM cache ({} of its {}-byte hard cap are held \
                 by referenced buffers) and there is no disk tier to put it in; raise the hard cap \
                 or configure a store directory",
                buffer.len(),
                self.ram_bytes(),
                self.config.hard_cap
            )));
        };
        lower.put(buffer)?;
        self.offloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl BufferTier for RamCache {
    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .entries
            .get(checksum)
            .is_some_and(|e| e.buffer.is_some()))
    }

    fn get(&self, checksum: &Checksum) -> Result<Option<Buffer>, StoreError> {
        let mut state = self.lock();
        let found = match state.entries.get(checksum) {
            Some(e) if e.buffer.is_some() => state.touch(checksum).buffer.clone(),
            _ => None,
        };
        drop(state);
        self.counters.lookup(found.is_some());
        Ok(found)
    }

    /// Keep the buffer in RAM (as a weak entry unless referenced). Crossing the soft cap runs
    /// eviction; a buffer that cannot fit under the hard cap even then goes to the lower tier.
    fn put(&self, buffer: &Buffer) -> Result<(), StoreError> {
        let hard_cap = self.config.hard_cap;
        let mut fitted = self.lock().insert(buffer, hard_cap);
        if !fitted {
            self.run_eviction_once()?;
            fitted = self.lock().insert(buffer, hard_cap);
        }
        if !fitted {
            return self.spill(buffer);
        }
        self.counters.put();
        if self.ram_bytes() > self.config.soft_cap {
            self.run_eviction_once()?;
        }
        Ok(())
    }

    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        Ok(self
            .lock()
            .entries
            .get(checksum)
            .and_then(|e| e.buffer.as_ref())
            .map(|b| b.len() as u64))
    }

    /// RAM is free to read from.
    fn fetch_cost(&self, _checksum: &Checksum, _size: u64) -> f64 {
        0.0
    }

    fn stats(&self) -> Stats {
        let mut ram = self.counters.snapshot("ram");
        ram.ram_bytes = self.ram_bytes();
        ram.evictions = self.evictions.load(Ordering::Relaxed);
        ram.offloads = self.offloads.load(Ordering::Relaxed);
        Stats { tiers: vec![ram] }
    }
}

/// Handle of the background eviction thread; dropping it stops the thread.
pub struct EvictionLoop {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EvictionLoop {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
