//! The YAML reader (libyaml events composed as PyYAML's safe_load): any text gives a value or
//! an error, never a panic or a memory error (the parser is translated C).
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::yaml;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = yaml::validate(text);
        let _ = yaml::to_value(text);
    }
});
