//! Helpers for the unit tests that drive a `Namespace` without the kernel.

use std::path::Path;
use std::sync::Arc;

use super::namespace::{Namespace, Options};
use crate::store::{Store, StoreOptions};

/// A namespace over a store at `root` with a small RAM tier (so the tests go through the whole
/// tier stack).
pub fn namespace(root: &Path) -> Namespace {
    let options = StoreOptions {
        ram: Some(crate::store::RamConfig::new(1 << 20, None)),
        ..StoreOptions::default()
    };
    let store = Store::open(root, &options, "test").unwrap();
    Namespace::new(Arc::new(store), Options::default()).unwrap()
}

pub fn write_file(ns: &Namespace, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, opened) = ns.create(parent, name, 0o644).unwrap();
    for (i, chunk) in data.chunks(7).enumerate() {
        ns.write(opened.fh, (i * 7) as u64, chunk).unwrap();
    }
    ns.flush(opened.fh).unwrap();
    ns.release(opened.fh).unwrap();
    attr.ino
}

pub fn read_all(ns: &Namespace, ino: u64) -> Vec<u8> {
    let opened = ns.open(ino, libc::O_RDONLY).unwrap();
    let data = ns.read(opened.fh, 0, u32::MAX).unwrap().to_vec();
    ns.release(opened.fh).unwrap();
    data
}

pub fn names(ns: &Namespace, dir: u64) -> Vec<String> {
    let fh = ns.opendir(dir).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = ns.readdir(fh, out.len() as u64).unwrap();
        if batch.is_empty() {
            break;
        }
        out.extend(batch.into_iter().map(|e| e.name));
    }
    ns.releasedir(fh);
    out
}
