//! How CPython 3.11 reads numbers written with any script's digits: `int()` and `float()` first
//! map every Unicode decimal digit (category `Nd`) to its ASCII digit and every non-ASCII Unicode space
//! to `' '` (`_PyUnicode_TransformDecimalAndSpaceToASCII`), so `int("١٢")` is 12 and
//! `float("٣.٥")` is 3.5.

/// The Unicode `Nd` characters, as runs of consecutive code points whose first is digit 0
/// (every run is whole sets of 0–9, a Unicode stability guarantee).
///
/// Generated from CPython 3.11's `unicodedata` (Unicode 14.0.0) rather than taken from a crate:
/// the Unicode crates follow Unicode 15/16, which add digits (Kawi, Nag Mundari, Garay, ...)
/// that Python 3.11's `int()` refuses. Regenerate with:
/// `[c for c in range(0x110000) if unicodedata.category(chr(c)) == "Nd"]`, grouped into runs.
const ND_RUNS: [(u32, u32); 62] = [
    (0x30, 0x3A),
    (0x660, 0x66A),
    (0x6F0, 0x6FA),
    (0x7C0, 0x7CA),
    (0x966, 0x970),
    (0x9E6, 0x9F0),
    (0xA66, 0xA70),
    (0xAE6, 0xAF0),
    (0xB66, 0xB70),
    (0xBE6, 0xBF0),
    (0xC66, 0xC70),
    (0xCE6, 0xCF0),
    (0xD66, 0xD70),
    (0xDE6, 0xDF0),
    (0xE50, 0xE5A),
    (0xED0, 0xEDA),
    (0xF20, 0xF2A),
    (0x1040, 0x104A),
    (0x1090, 0x109A),
    (0x17E0, 0x17EA),
    (0x1810, 0x181A),
    (0x1946, 0x1950),
    (0x19D0, 0x19DA),
    (0x1A80, 0x1A8A),
    (0x1A90, 0x1A9A),
    (0x1B50, 0x1B5A),
    (0x1BB0, 0x1BBA),
    (0x1C40, 0x1C4A),
    (0x1C50, 0x1C5A),
    (0xA620, 0xA62A),
    (0xA8D0, 0xA8DA),
    (0xA900, 0xA90A),
    (0xA9D0, 0xA9DA),
    (0xA9F0, 0xA9FA),
    (0xAA50, 0xAA5A),
    (0xABF0, 0xABFA),
    (0xFF10, 0xFF1A),
    (0x104A0, 0x104AA),
    (0x10D30, 0x10D3A),
    (0x11066, 0x11070),
    (0x110F0, 0x110FA),
    (0x11136, 0x11140),
    (0x111D0, 0x111DA),
    (0x112F0, 0x112FA),
    (0x11450, 0x1145A),
    (0x114D0, 0x114DA),
    (0x11650, 0x1165A),
    (0x116C0, 0x116CA),
    (0x11730, 0x1173A),
    (0x118E0, 0x118EA),
    (0x11950, 0x1195A),
    (0x11C50, 0x11C5A),
    (0x11D50, 0x11D5A),
    (0x11DA0, 0x11DAA),
    (0x16A60, 0x16A6A),
    (0x16AC0, 0x16ACA),
    (0x16B50, 0x16B5A),
    (0x1D7CE, 0x1D800),
    (0x1E140, 0x1E14A),
    (0x1E2F0, 0x1E2FA),
    (0x1E950, 0x1E95A),
    (0x1FBF0, 0x1FBFA),
];

/// The decimal value of a Unicode `Nd` character (Python's `unicodedata.decimal`).
pub fn decimal_value(c: char) -> Option<u32> {
    let c = c as u32;
    let i = ND_RUNS
        .partition_point(|&(start, _)| start <= c)
        .checked_sub(1)?;
    let (start, end) = ND_RUNS[i];
    (c < end).then_some((c - start) % 10)
}

/// The whitespace `int()`/`float()` strip after the transform (`Py_ISSPACE`, ASCII only).
pub const ASCII_SPACE: [char; 6] = [' ', '\t', '\n', '\u{b}', '\u{c}', '\r'];

/// `_PyUnicode_TransformDecimalAndSpaceToASCII`: ASCII below U+007F kept as it is, other
/// spaces to `' '`, decimal digits to ASCII digits, anything else `'?'` (which no number syntax
/// accepts).
pub fn to_ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c as u32) < 0x7f {
                c
            } else if c.is_whitespace() {
                ' '
            } else if let Some(d) = decimal_value(c) {
                char::from_digit(d, 10).expect("a decimal digit")
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_of_every_script() {
        assert_eq!(to_ascii("١٢"), "12");
        assert_eq!(to_ascii("𝟎"), "0");
        assert_eq!(to_ascii("٣.٥"), "3.5");
        assert_eq!(to_ascii("\u{a0}\u{1c}1\u{2212}\u{7f}"), " \u{1c}1??");
        assert_eq!(decimal_value('9'), Some(9));
        assert_eq!(decimal_value('²'), None);
        assert_eq!(decimal_value('\u{1E950}'), Some(0));
        // Kawi digit zero: Unicode 15, not a digit to Python 3.11.
        assert_eq!(decimal_value('\u{11F50}'), None);
    }
}
