//! The Python `json` dialect (mixed buffers and their headers): any text parses or gives an
//! error; a parsed value is written back both ways, and what is written parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::json_parse::{Dialect, parse};
use seamfs::celltype::json_python::{Style, write};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = parse(text, Dialect::Python) {
        for style in [Style::Compact, Style::IndentedSorted] {
            if let Ok(written) = write(&value, style) {
                parse(&written, Dialect::Python).expect("what json.dumps writes parses again");
            }
        }
    }
});
