//! `Layered`: a fast tier over a slow one (RAM over disk, disk over a remote tier), itself a
//! `Tier`. It is the only type that knows two tiers.
//!
//! * Reads try the fast tier, then the slow one. What the slow tier returns is copied up
//!   (read-through fill) only when it is not a local file: a memory map of a local file costs
//!   no RAM and is already as fast as RAM, so copying it would only waste memory. Large buffers
//!   are streamed up (never read whole into RAM first).
//! * Streamed writes (`begin_write`) go where `Writes` says: to the slow tier when the fast one
//!   is not durable (RAM over disk: a commit is then as durable as the disk; small ones, up to
//!   `fill_limit`, also land in RAM), or to the fast tier when it is (disk over a tier below:
//!   eviction moves them down later, so the RAM tier's offloads land on the disk first).
//! * Whole buffers (`put`: bytes that already live in RAM, such as view results) go to the fast
//!   tier only, and to the slow tier when the fast one is full (write-back).
//! * A slow tier that downloads (`Tier::read_through`: a network tier) streams into the fast
//!   tier itself, verified there, and its readers are served while it streams.
//! * As a read cache (`Layered::cache`: the local disk over remotes) the slow tier is only read:
//!   writes, removals and the listing stay in the fast tier.
//! * Eviction: when the fast tier has a capacity (`Tier::evictor`), `evict_once` moves its
//!   victims down: each is copied to the slow tier unless that has it (an offload), and only
//!   then forgotten by the fast tier, so eviction never loses a buffer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{
    Kept, Listing, Reader, Stats, StoreError, Tier, TierWrite, ask_lacking, ask_lacking_lengths,
    copy_into,
};
use crate::buffer::Buffer;
use crate::checksum::Checksum;

/// Where streamed writes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    /// The fast tier is not durable (RAM): write to the slow one, fill the fast one.
    ToSlow,
    /// The fast tier is durable (a disk): write to it; eviction moves buffers down.
    ToFast,
}

/// Two tiers composed into one (cheap to clone: the tiers are shared).
#[derive(Clone)]
pub struct Layered {
    fast: Arc<dyn Tier>,
    slow: Arc<dyn Tier>,
    writes: Writes,
    /// Streamed writes up to this size are also kept in the fast tier.
    fill_limit: u64,
    /// The slow tier is only read (see the module doc).
    read_only_below: bool,
    /// Eviction drops what the slow tier lacks instead of copying it down (see `over_read_only`).
    drop_unbacked: bool,
}

/// What one eviction pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvictionReport {
    /// Buffers moved out of the fast tier, in eviction order.
    pub evicted: Vec<Checksum>,
    /// Of those, the ones copied to the slow tier (it lacked them).
    pub offloaded: Vec<Checksum>,
}

impl Layered {
    pub fn new(fast: Arc<dyn Tier>, slow: Arc<dyn Tier>, writes: Writes) -> Self {
        Layered {
            fast,
            slow,
            writes,
            fill_limit: 1 << 20,
            read_only_below: false,
            drop_unbacked: false,
        }
    }

    /// RAM over a disk that refuses writes (a deployment's buffer directory mounted read-only):
    /// reads, the listing and removals as `new`, but eviction drops what only RAM holds (view
    /// results, computed again when needed) instead of copying it down.
    pub fn over_read_only(fast: Arc<dyn Tier>, slow: Arc<dyn Tier>) -> Self {
        Layered {
            drop_unbacked: true,
            ..Layered::new(fast, slow, Writes::ToSlow)
        }
    }

    /// The fast tier as a read cache of the slow one, which is never written (remotes under the
    /// local disk: what is written locally is pushed separately).
    pub fn cache(fast: Arc<dyn Tier>, slow: Arc<dyn Tier>) -> Self {
        Layered {
            read_only_below: true,
            ..Layered::new(fast, slow, Writes::ToFast)
        }
    }

    /// Keep streamed writes up to `bytes` in the fast tier too (default 1 MiB; 0: never).
    pub fn with_fill_limit(mut self, bytes: u64) -> Self {
        self.fill_limit = bytes;
        self
    }

    /// Copy a buffer into the fast tier. A failed fill costs only speed: logged, not returned.
    fn fill(&self, buffer: &Buffer) {
        match self.fast.put(buffer) {
            Ok(checksum) => self.evict_quietly(0, Some(&checksum)),
            Err(e) => {
                tracing::debug!(checksum = %buffer.checksum(), error = %e, "fill of the fast tier skipped")
            }
        }
    }

    /// Move the fast tier's eviction victims to the slow tier (see the module doc).
    pub fn evict_once(&self) -> Result<EvictionReport, StoreError> {
        self.evict_for(0, None)
    }

    /// `evict_once`, also making room for `room` more bytes under the fast tier's hard cap, and
    /// keeping `spare`.
    fn evict_for(&self, room: u64, spare: Option<&Checksum>) -> Result<EvictionReport, StoreError> {
        let mut report = EvictionReport::default();
        let Some(evictor) = self.fast.evictor() else {
            return Ok(report);
        };
        let slow = self.slow.as_ref();
        let mut victims = evictor
            .victims(room, spare, &|checksum, size| {
                slow.fetch_cost(checksum, size)
            })
            .into_iter();
        while let Some((checksum, reader)) = victims.next() {
            let moved = match slow.has(&checksum) {
                Ok(true) => Ok(false),
                // A read-only slow tier cannot take it: keep it (pushed buffers become evictable).
                Ok(false) if self.drop_unbacked => Ok(false),
                Ok(false) if self.read_only_below => {
                    evictor.kept(&checksum);
                    continue;
                }
                Ok(false) => copy_into(&reader, slow, &checksum).map(|()| true),
                Err(e) => Err(e),
            };
            match moved {
                Ok(offloaded) => {
                    evictor.evicted(&checksum, offloaded);
                    report.evicted.push(checksum);
                    if offloaded {
                        report.offloaded.push(checksum);
                    }
                }
                Err(e) => {
                    evictor.kept(&checksum);
                    for (rest, _) in victims {
                        evictor.kept(&rest);
                    }
                    return Err(e);
                }
            }
        }
        Ok(report)
    }

    fn evict_quietly(&self, room: u64, spare: Option<&Checksum>) {
        if let Err(e) = self.evict_for(room, spare) {
            tracing::warn!(error = %e, "eviction pass failed");
        }
    }

    /// Run `evict_once` every `interval` on a background thread (temprefs fade with time, so a
    /// quiet cache still drains to its soft cap), until the handle or the combinator is dropped.
    pub fn start_eviction_loop(self: &Arc<Self>, interval: Duration) -> EvictionLoop {
        let (stop, stopped) = mpsc::channel::<()>();
        let layered: Weak<Layered> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("seamfs-eviction".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let Some(layered) = layered.upgrade() else {
                        break;
                    };
                    layered.evict_quietly(0, None);
                }
            })
            .expect("spawning the eviction thread");
        EvictionLoop {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Tier for Layered {
    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self.fast.has(checksum)? || self.slow.has(checksum)?)
    }

    /// The slow tier is asked once, for what the fast one lacks.
    fn has_many(&self, checksums: &[Checksum]) -> Result<Vec<bool>, StoreError> {
        let mut found = self.fast.has_many(checksums)?;
        ask_lacking(self.slow.as_ref(), checksums, &mut found)?;
        Ok(found)
    }

    /// As `has_many`: the slow tier is asked once, for what the fast one lacks.
    fn length_many(&self, checksums: &[Checksum]) -> Result<Vec<Option<u64>>, StoreError> {
        let mut lengths = self.fast.length_many(checksums)?;
        ask_lacking_lengths(self.slow.as_ref(), checksums, &mut lengths)?;
        Ok(lengths)
    }

    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        match self.fast.length(checksum)? {
            Some(len) => Ok(Some(len)),
            None => self.slow.length(checksum),
        }
    }

    fn open_read(&self, checksum: &Checksum) -> Result<Option<Reader>, StoreError> {
        if let Some(reader) = self.fast.open_read(checksum)? {
            return Ok(Some(reader));
        }
        if let Some(streamed) = self.slow.read_through(checksum, &self.fast) {
            return streamed;
        }
        let Some(reader) = self.slow.open_read(checksum)? else {
            return Ok(None);
        };
        if self.slow.local_path(checksum).is_some() {
            return Ok(Some(reader));
        }
        if reader.len() <= self.fill_limit {
            let buffer = reader.into_buffer(*checksum)?;
            self.fill(&buffer);
            return Ok(Some(Reader::Bytes(buffer)));
        }
        // Large: streamed into the fast tier (a disk tier takes it; RAM refuses past its hard
        // cap), then read from there; else read from the slow tier as it is.
        match copy_into(&reader, self.fast.as_ref(), checksum) {
            Ok(()) => {
                self.evict_quietly(0, Some(checksum));
                Ok(self.fast.open_read(checksum)?.or(Some(reader)))
            }
            Err(e) => {
                tracing::debug!(%checksum, error = %e, "fill of the fast tier skipped");
                Ok(Some(reader))
            }
        }
    }

    /// A download from below streams into this pair's own fast tier (the disk under remotes),
    /// not into the caller's: the layer above (RAM) would otherwise copy the whole stream
    /// before its reader got the first byte, and a big buffer does not belong in RAM anyway.
    fn read_through(
        &self,
        checksum: &Checksum,
        _cache: &Arc<dyn Tier>,
    ) -> Option<Result<Option<Reader>, StoreError>> {
        match self.fast.open_read(checksum) {
            Ok(None) => self.slow.read_through(checksum, &self.fast),
            found => Some(found),
        }
    }

    fn begin_write(&self) -> Result<Box<dyn TierWrite>, StoreError> {
        if self.writes == Writes::ToFast {
            return self.fast.begin_write();
        }
        Ok(Box::new(LayeredWrite {
            slow: self.slow.begin_write()?,
            copy: Some(Vec::new()),
            layered: self.clone(),
        }))
    }

    fn resume_write(&self, path: &Path) -> Result<Option<Box<dyn TierWrite>>, StoreError> {
        if self.writes == Writes::ToFast {
            return self.fast.resume_write(path);
        }
        Ok(self.slow.resume_write(path)?.map(|slow| {
            Box::new(LayeredWrite {
                slow,
                copy: None,
                layered: self.clone(),
            }) as Box<dyn TierWrite>
        }))
    }

    /// The slow tier's buffers, then those only the fast tier holds.
    fn list(&self) -> Listing {
        if self.read_only_below {
            return self.fast.list();
        }
        let slow = self.slow.clone();
        let only_fast = self
            .fast
            .list()
            .filter(move |r| !matches!(r, Ok(cs) if slow.has(cs).unwrap_or(false)));
        Box::new(self.slow.list().chain(only_fast))
    }

    fn local_path(&self, checksum: &Checksum) -> Option<PathBuf> {
        self.fast
            .local_path(checksum)
            .or_else(|| self.slow.local_path(checksum))
    }

    fn remove(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        let fast = self.fast.remove(checksum)?;
        if self.read_only_below {
            return Ok(fast);
        }
        Ok(self.slow.remove(checksum)? || fast)
    }

    fn stats(&self) -> Stats {
        let mut all = self.fast.stats();
        all.tiers.extend(self.slow.stats().tiers);
        all
    }

    fn fetch_cost(&self, checksum: &Checksum, size: u64) -> f64 {
        match self.fast.has(checksum) {
            Ok(true) => self.fast.fetch_cost(checksum, size),
            _ => self.slow.fetch_cost(checksum, size),
        }
    }

    fn hold(&self, checksum: &Checksum) {
        self.fast.hold(checksum);
        self.slow.hold(checksum);
    }

    fn release(&self, checksum: &Checksum) {
        self.fast.release(checksum);
        self.slow.release(checksum);
    }

    fn derived(&self, checksum: &Checksum, cpu_seconds: f64) {
        self.fast.derived(checksum, cpu_seconds);
        self.slow.derived(checksum, cpu_seconds);
    }

    fn pin(&self, checksum: &Checksum, pinned: bool) {
        self.fast.pin(checksum, pinned);
        self.slow.pin(checksum, pinned);
    }

    /// Write-back: the fast tier, or the slow one when the fast one is full even after an
    /// eviction pass.
    fn put(&self, buffer: &Buffer) -> Result<Checksum, StoreError> {
        if self.read_only_below {
            return self.fast.put(buffer);
        }
        let mut result = self.fast.put(buffer);
        if let Err(StoreError::Full(_)) = result {
            self.evict_quietly(buffer.len() as u64, None);
            result = self.fast.put(buffer);
        }
        match result {
            Err(StoreError::Full(reason)) => {
                tracing::debug!(%reason, "fast tier full: writing to the slow tier");
                self.slow.put(buffer)
            }
            Ok(checksum) => {
                // The buffer just put is about to be read: it is not this pass's victim.
                self.evict_quietly(0, Some(&checksum));
                Ok(checksum)
            }
            Err(e) => Err(e),
        }
    }
}

/// A streamed write into the slow tier, with a copy of a small buffer for the fast tier.
struct LayeredWrite {
    slow: Box<dyn TierWrite>,
    /// The bytes so far while they stay under the fill limit.
    copy: Option<Vec<u8>>,
    layered: Layered,
}

impl LayeredWrite {
    /// Commit the slow tier's write with `commit`, then fill the fast tier with the copy.
    fn finish(
        self,
        commit: impl FnOnce(Box<dyn TierWrite>) -> Result<Checksum, StoreError>,
    ) -> Result<Checksum, StoreError> {
        let checksum = commit(self.slow)?;
        if let Some(copy) = self.copy.filter(|c| !c.is_empty()) {
            self.layered.fill(&Buffer::with_checksum(copy, checksum));
        }
        Ok(checksum)
    }
}

impl TierWrite for LayeredWrite {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.slow.write_at(offset, data)?;
        let end = offset + data.len() as u64;
        if end > self.layered.fill_limit {
            self.copy = None;
        }
        if let Some(copy) = &mut self.copy {
            if copy.len() < end as usize {
                copy.resize(end as usize, 0);
            }
            copy[offset as usize..end as usize].copy_from_slice(data);
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.slow.set_len(len)?;
        if len > self.layered.fill_limit {
            self.copy = None;
        }
        if let Some(copy) = &mut self.copy {
            copy.resize(len as usize, 0);
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.slow.read_at(offset, buf)
    }
    fn read_back(&self) -> Option<std::fs::File> {
        self.slow.read_back()
    }

    fn len(&self) -> u64 {
        self.slow.len()
    }

    fn commit(self: Box<Self>, expected: Option<Checksum>) -> Result<Checksum, StoreError> {
        self.finish(|slow| slow.commit(expected))
    }

    fn commit_deferred(
        self: Box<Self>,
        expected: Option<Checksum>,
    ) -> Result<Checksum, StoreError> {
        self.finish(|slow| slow.commit_deferred(expected))
    }

    fn needs_rehash(&self) -> bool {
        self.slow.needs_rehash()
    }

    fn keep(&mut self, tag: &str) -> Result<Option<Kept>, StoreError> {
        self.slow.keep(tag)
    }

    fn overlay(&mut self, base: std::fs::File, len: u64) -> Result<bool, StoreError> {
        let overlaid = self.slow.overlay(base, len)?;
        if overlaid {
            // The bytes are the base's, not a copy here: nothing to fill the fast tier with.
            self.copy = None;
        }
        Ok(overlaid)
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
