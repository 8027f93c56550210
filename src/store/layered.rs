//! `Layered`: a fast tier over a slow one (RAM over disk, disk over remote), itself a `BufferTier`.
//!
//! Reads try the fast tier, then the slow one, and copy what the slow tier returned into the fast
//! tier (read-through fill). Writes follow a `WritePolicy`: through both tiers (durable first), or
//! into the fast tier only, spilling to the slow one when the fast tier is full.

use std::sync::Arc;

use super::{BufferTier, Stats, StoreError};
use crate::buffer::Buffer;
use crate::checksum::Checksum;

/// Where `put` sends a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePolicy {
    /// Slow tier first (so the buffer is durable when `put` returns), then the fast tier.
    Through,
    /// Fast tier only; the slow tier when the fast one is full. The fast tier is responsible
    /// for offloading what it evicts (the RAM cache does).
    Back,
}

/// Two tiers composed into one.
pub struct Layered {
    fast: Arc<dyn BufferTier>,
    slow: Arc<dyn BufferTier>,
    policy: WritePolicy,
}

impl Layered {
    pub fn new(fast: Arc<dyn BufferTier>, slow: Arc<dyn BufferTier>, policy: WritePolicy) -> Self {
        Layered { fast, slow, policy }
    }

    /// Copy a buffer found in the slow tier into the fast one. A failed fill costs only speed,
    /// so it is logged rather than returned.
    fn fill(&self, buffer: &Buffer) {
        if let Err(e) = self.fast.put(buffer) {
            tracing::debug!(checksum = %buffer.checksum(), error = %e, "read-through fill skipped");
        }
    }
}

impl BufferTier for Layered {
    fn has(&self, checksum: &Checksum) -> Result<bool, StoreError> {
        Ok(self.fast.has(checksum)? || self.slow.has(checksum)?)
    }

    fn get(&self, checksum: &Checksum) -> Result<Option<Buffer>, StoreError> {
        if let Some(buffer) = self.fast.get(checksum)? {
            return Ok(Some(buffer));
        }
        let found = self.slow.get(checksum)?;
        if let Some(buffer) = &found {
            self.fill(buffer);
        }
        Ok(found)
    }

    fn put(&self, buffer: &Buffer) -> Result<(), StoreError> {
        match self.policy {
            WritePolicy::Through => {
                self.slow.put(buffer)?;
                self.fill(buffer);
                Ok(())
            }
            WritePolicy::Back => match self.fast.put(buffer) {
                Err(StoreError::Full(reason)) => {
                    tracing::debug!(%reason, "fast tier full: writing to the slow tier");
                    self.slow.put(buffer)
                }
                other => other,
            },
        }
    }

    fn length(&self, checksum: &Checksum) -> Result<Option<u64>, StoreError> {
        match self.fast.length(checksum)? {
            Some(len) => Ok(Some(len)),
            None => self.slow.length(checksum),
        }
    }

    fn fetch_cost(&self, checksum: &Checksum, size: u64) -> f64 {
        match self.fast.has(checksum) {
            Ok(true) => self.fast.fetch_cost(checksum, size),
            _ => self.slow.fetch_cost(checksum, size),
        }
    }

    fn stats(&self) -> Stats {
        let mut all = self.fast.stats();
        all.tiers.extend(self.slow.stats().tiers);
        all
    }
}
