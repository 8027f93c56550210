//! The RAM buffer cache (refcounts, decaying temprefs, soft/hard caps, cost-aware eviction) and
//! the memmap offload tier.
