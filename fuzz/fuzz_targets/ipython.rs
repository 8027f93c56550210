//! The IPython validator: the IPython-to-Python transform of any text, then validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::ipython;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ipython::transform(text);
        let _ = ipython::validate(text);
    }
});
