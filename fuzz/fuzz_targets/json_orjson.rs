//! The orjson JSON dialect (plain and scalar cell types): any bytes parse or give an error; a
//! parsed value is written back, and what is written parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seamfs::celltype::json_parse::{Dialect, parse};
use seamfs::celltype::{CellType, deserialize, json_orjson};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(value) = parse(text, Dialect::Orjson)
        && let Ok(written) = json_orjson::write(&value, false)
    {
        let written = String::from_utf8(written).expect("orjson writes UTF-8");
        parse(&written, Dialect::Orjson).expect("what orjson writes parses again");
    }
    for celltype in [CellType::Plain, CellType::Int, CellType::Float, CellType::Str] {
        let _ = deserialize(data, celltype);
    }
});
