//! The mixed-buffer reader: any bytes give a value or an error, never a panic; a value read is
//! serialized again without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::mixed;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = mixed::deserialize(data) {
        let _ = mixed::serialize(&value);
    }
});
