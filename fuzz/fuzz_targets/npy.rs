//! The `.npy` reader: any bytes give an array or an error, never a panic; an array read back
//! from what the writer makes of it is read again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::{CellType, deserialize, npy};

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = npy::read(data) {
        let written = npy::write(&array);
        npy::read(&written).expect("the writer's output reads back");
    }
    let _ = deserialize(data, CellType::Binary);
});
