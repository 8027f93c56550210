//! The Python validator (ruff's parser, CPython's rules): any text is valid or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::python;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = python::validate(text);
    }
});
