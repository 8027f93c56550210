//! The conversion engine between the 13 cell types (spec §3 and `conversions.md`).
