//! BufferInfo: the facts known about a buffer (length, is_json, dtype, conversion partners …),
//! in the shape of the seamless-database `buffer_info` record (spec §3/§5, conversions.md §6.3).
//!
//! Owns the record and its JSON form (unknown keys preserved), the rules that propagate a fact to
//! the flags it implies, `Facts` (what one conversion learned, per checksum), and
//! `detect_celltype`: what a buffer "is" for the mount.

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use crate::celltype::mixed::MIXED_MAGIC;
use crate::celltype::npy::MAGIC as NPY_MAGIC;
use crate::celltype::{self, CellType};
use crate::checksum::Checksum;
use crate::value::Value;

/// What is known about one buffer. `None` means unknown. The conversion fields (`a2b`) hold the
/// checksum of the same content converted from cell type `a` to `b`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BufferInfo {
    pub length: Option<u64>,
    pub is_utf8: Option<bool>,
    pub is_json: Option<bool>,
    /// The top-level JSON type: `dict`, `list`, or (as seamless writes it) the cell type name
    /// `str`, `int`, `float`, `bool`.
    pub json_type: Option<String>,
    pub is_json_numeric_array: Option<bool>,
    pub is_json_numeric_scalar: Option<bool>,
    pub is_numpy: Option<bool>,
    /// numpy's `str(dtype)`, e.g. `int64`.
    pub dtype: Option<String>,
    pub shape: Option<Vec<u64>>,
    pub is_seamless_mixed: Option<bool>,
    pub str2text: Option<Checksum>,
    pub text2str: Option<Checksum>,
    pub binary2bytes: Option<Checksum>,
    pub bytes2binary: Option<Checksum>,
    pub binary2json: Option<Checksum>,
    pub json2binary: Option<Checksum>,
    /// The number of members of a deep buffer.
    pub members: Option<u64>,
    /// Keys this version does not know, and free-form fields holding another shape than seamless
    /// writes, kept as they came (the database accepts them).
    pub extra: Map<String, Json>,
}

/// One of the boolean flags, for `BufferInfo::set_flag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Utf8,
    Json,
    JsonNumericArray,
    JsonNumericScalar,
    Numpy,
    SeamlessMixed,
}

/// A BufferInfo record that does not have the documented shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid buffer info field '{key}': {reason}")]
pub struct BufferInfoError {
    pub key: String,
    pub reason: String,
}

impl BufferInfo {
    /// An empty record with only the length.
    pub fn with_length(length: usize) -> Self {
        BufferInfo {
            length: Some(length as u64),
            ..Default::default()
        }
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == BufferInfo::default()
    }

    /// Record a flag and what it implies. A true `is_json` implies `is_utf8`; a true numeric
    /// flag implies `is_json`; `is_json`, `is_numpy` and `is_seamless_mixed` exclude each other.
    /// A false value implies nothing: seamless-core also spread falses to the implied flags,
    /// which marked valid JSON as non-UTF-8 after a failed `plain → binary` (docs/compat.md).
    pub fn set_flag(&mut self, flag: Flag, value: bool) {
        *self.flag_mut(flag) = Some(value);
        if !value {
            return;
        }
        match flag {
            Flag::Utf8 => {}
            Flag::Json => {
                self.is_utf8 = Some(true);
                self.is_numpy = Some(false);
                self.is_seamless_mixed = Some(false);
            }
            Flag::JsonNumericArray | Flag::JsonNumericScalar => self.set_flag(Flag::Json, true),
            Flag::Numpy => {
                self.is_json = Some(false);
                self.is_seamless_mixed = Some(false);
            }
            Flag::SeamlessMixed => {
                self.is_json = Some(false);
                self.is_numpy = Some(false);
            }
        }
    }

    /// Record the JSON type (which implies `is_json`).
    pub fn set_json_type(&mut self, json_type: &str) {
        self.json_type = Some(json_type.to_string());
        self.set_flag(Flag::Json, true);
    }

    /// Record the array type of a `.npy` buffer (which implies `is_numpy`).
    pub fn set_array(&mut self, dtype: &str, shape: &[usize]) {
        self.dtype = Some(dtype.to_string());
        self.shape = Some(shape.iter().map(|&n| n as u64).collect());
        self.set_flag(Flag::Numpy, true);
    }

    fn flag_mut(&mut self, flag: Flag) -> &mut Option<bool> {
        match flag {
            Flag::Utf8 => &mut self.is_utf8,
            Flag::Json => &mut self.is_json,
            Flag::JsonNumericArray => &mut self.is_json_numeric_array,
            Flag::JsonNumericScalar => &mut self.is_json_numeric_scalar,
            Flag::Numpy => &mut self.is_numpy,
            Flag::SeamlessMixed => &mut self.is_seamless_mixed,
        }
    }

    /// Merge newer facts in (seamless-core `BufferInfo.update`): every field `other` knows
    /// overwrites ours, and its flags propagate as in `set_flag`.
    pub fn merge(&mut self, other: &BufferInfo) {
        macro_rules! take {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field.clone(); } )* };
        }
        take!(
            length,
            json_type,
            dtype,
            shape,
            str2text,
            text2str,
            binary2bytes,
            bytes2binary
        );
        take!(binary2json, json2binary, members);
        let flags = [
            (Flag::Utf8, other.is_utf8),
            (Flag::Json, other.is_json),
            (Flag::JsonNumericArray, other.is_json_numeric_array),
            (Flag::JsonNumericScalar, other.is_json_numeric_scalar),
            (Flag::Numpy, other.is_numpy),
            (Flag::SeamlessMixed, other.is_seamless_mixed),
        ];
        // Falses first, so that a true fact of `other` wins over an implied false.
        for (flag, value) in flags
            .iter()
            .filter(|(_, v)| *v == Some(false))
            .chain(flags.iter().filter(|(_, v)| *v == Some(true)))
        {
            self.set_flag(*flag, value.unwrap());
        }
        for (k, v) in &other.extra {
            self.extra.insert(k.clone(), v.clone());
        }
    }

    /// The JSON object the database stores: known fields in seamless-core's slot order, then
    /// the unknown keys. Unknown fields are left out, as `BufferInfo.as_dict` does.
    pub fn to_map(&self) -> Map<String, Json> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Json>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("length", self.length.map(Json::from));
        put("is_utf8", self.is_utf8.map(Json::Bool));
        put("is_json", self.is_json.map(Json::Bool));
        put("json_type", self.json_type.clone().map(Json::String));
        put(
            "is_json_numeric_array",
            self.is_json_numeric_array.map(Json::Bool),
        );
        put(
            "is_json_numeric_scalar",
            self.is_json_numeric_scalar.map(Json::Bool),
        );
        put("is_numpy", self.is_numpy.map(Json::Bool));
        put("dtype", self.dtype.clone().map(Json::String));
        put("shape", self.shape.clone().map(Json::from));
        put("is_seamless_mixed", self.is_seamless_mixed.map(Json::Bool));
        for (key, value) in self.conversion_fields() {
            put(key, value.map(|c| Json::String(c.hex())));
        }
        put("members", self.members.map(Json::from));
        for (k, v) in &self.extra {
            // A typed value (set later) wins over a free-form one read from a database.
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }

    fn conversion_fields(&self) -> [(&'static str, Option<Checksum>); 6] {
        [
            ("str2text", self.str2text),
            ("text2str", self.text2str),
            ("binary2bytes", self.binary2bytes),
            ("bytes2binary", self.bytes2binary),
            ("binary2json", self.binary2json),
            ("json2binary", self.json2binary),
        ]
    }

    /// Read the database's JSON object. `null` means unknown. As the database, only `length`
    /// (an integer ≥ 0) and the `is_*` flags (booleans) must have their type: a free-form field
    /// with a value of another shape than seamless writes is kept as it came in `extra`, like
    /// unknown keys, so that nothing read from a database is lost or refused.
    pub fn from_map(map: &Map<String, Json>) -> Result<Self, BufferInfoError> {
        let mut info = BufferInfo::default();
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let bad = |reason: &str| BufferInfoError {
                key: key.clone(),
                reason: reason.to_string(),
            };
            let kept = match key.as_str() {
                "length" => {
                    info.length = Some(
                        value
                            .as_u64()
                            .ok_or_else(|| bad("expected an integer ≥ 0"))?,
                    );
                    true
                }
                k if flag_by_name(k).is_some() => {
                    let b = value
                        .as_bool()
                        .ok_or_else(|| bad("expected true or false"))?;
                    *info.flag_mut(flag_by_name(k).unwrap()) = Some(b);
                    true
                }
                "members" => value.as_u64().map(|n| info.members = Some(n)).is_some(),
                "json_type" => value
                    .as_str()
                    .map(|s| info.json_type = Some(s.to_string()))
                    .is_some(),
                "dtype" => value
                    .as_str()
                    .map(|s| info.dtype = Some(s.to_string()))
                    .is_some(),
                "shape" => parse_shape(value).map(|s| info.shape = Some(s)).is_some(),
                k => match (
                    value.as_str().and_then(Checksum::parse_strict),
                    conversion_field_mut(&mut info, k),
                ) {
                    (Some(cs), Some(slot)) => {
                        *slot = Some(cs);
                        true
                    }
                    _ => false,
                },
            };
            if !kept {
                info.extra.insert(key.clone(), value.clone());
            }
        }
        Ok(info)
    }
}

fn parse_shape(value: &Json) -> Option<Vec<u64>> {
    value.as_array()?.iter().map(|n| n.as_u64()).collect()
}

fn flag_by_name(name: &str) -> Option<Flag> {
    Some(match name {
        "is_utf8" => Flag::Utf8,
        "is_json" => Flag::Json,
        "is_json_numeric_array" => Flag::JsonNumericArray,
        "is_json_numeric_scalar" => Flag::JsonNumericScalar,
        "is_numpy" => Flag::Numpy,
        "is_seamless_mixed" => Flag::SeamlessMixed,
        _ => return None,
    })
}

fn conversion_field_mut<'a>(
    info: &'a mut BufferInfo,
    name: &str,
) -> Option<&'a mut Option<Checksum>> {
    Some(match name {
        "str2text" => &mut info.str2text,
        "text2str" => &mut info.text2str,
        "binary2bytes" => &mut info.binary2bytes,
        "bytes2binary" => &mut info.bytes2binary,
        "binary2json" => &mut info.binary2json,
        "json2binary" => &mut info.json2binary,
        _ => return None,
    })
}

/// The facts one operation learned, per checksum, in the order they were learned. The caller
/// merges them into its store (`BufferInfo::merge`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts(IndexMap<Checksum, BufferInfo>);

impl Facts {
    /// The record for `checksum`, created empty if needed.
    pub fn about(&mut self, checksum: Checksum) -> &mut BufferInfo {
        self.0.entry(checksum).or_default()
    }

    pub fn get(&self, checksum: &Checksum) -> Option<&BufferInfo> {
        self.0.get(checksum)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Checksum, &BufferInfo)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Record that `checksum`'s buffer is valid as `celltype` (seamless `guarantee_buffer_info`):
    /// `mixed` by its magic, `binary` → is_numpy, `plain` → is_json, text types → is_utf8,
    /// `str/int/float/bool` → json_type. `bytes` and `checksum` say nothing.
    pub fn guarantee(&mut self, checksum: Checksum, bytes: &[u8], celltype: CellType) {
        let info = self.about(checksum);
        info.length = Some(bytes.len() as u64);
        match celltype {
            CellType::Mixed => info.set_flag(magic_flag(bytes), true),
            CellType::Binary => info.set_flag(Flag::Numpy, true),
            CellType::Plain => info.set_flag(Flag::Json, true),
            CellType::Text | CellType::Python | CellType::Ipython | CellType::Yaml => {
                info.set_flag(Flag::Utf8, true)
            }
            CellType::Str | CellType::Int | CellType::Float | CellType::Bool => {
                info.set_json_type(celltype.name())
            }
            CellType::Bytes | CellType::Checksum => {}
        }
    }

    /// Record the conversion partners `from --(a→b)--> to` in both records, under the field
    /// names seamless-core uses (`str2text`/`text2str`, `binary2bytes`/`bytes2binary`,
    /// `binary2json`/`json2binary`). `both_ways` false records only the forward field, for
    /// conversions whose reverse does not give the source back (`bytes → binary`).
    pub fn partners(&mut self, from: Checksum, to: Checksum, field: PartnerField, both_ways: bool) {
        let (forward, backward) = field.slots();
        *forward(self.about(from)) = Some(to);
        if both_ways {
            *backward(self.about(to)) = Some(from);
        }
    }

    /// Add everything `other` learned (later facts win).
    pub fn extend(&mut self, other: Facts) {
        for (cs, info) in other.0 {
            self.about(cs).merge(&info);
        }
    }
}

/// The pairs of conversion fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerField {
    StrText,
    TextStr,
    BinaryBytes,
    BytesBinary,
    BinaryJson,
    JsonBinary,
}

type Slot = fn(&mut BufferInfo) -> &mut Option<Checksum>;

impl PartnerField {
    /// (field of the source record, field of the result record).
    fn slots(self) -> (Slot, Slot) {
        let str2text: Slot = |i| &mut i.str2text;
        let text2str: Slot = |i| &mut i.text2str;
        let binary2bytes: Slot = |i| &mut i.binary2bytes;
        let bytes2binary: Slot = |i| &mut i.bytes2binary;
        let binary2json: Slot = |i| &mut i.binary2json;
        let json2binary: Slot = |i| &mut i.json2binary;
        match self {
            PartnerField::StrText => (str2text, text2str),
            PartnerField::TextStr => (text2str, str2text),
            PartnerField::BinaryBytes => (binary2bytes, bytes2binary),
            PartnerField::BytesBinary => (bytes2binary, binary2bytes),
            PartnerField::BinaryJson => (binary2json, json2binary),
            PartnerField::JsonBinary => (json2binary, binary2json),
        }
    }
}

/// The flag a mixed buffer's first bytes decide.
fn magic_flag(bytes: &[u8]) -> Flag {
    if bytes.starts_with(NPY_MAGIC) {
        Flag::Numpy
    } else if bytes.starts_with(MIXED_MAGIC) {
        Flag::SeamlessMixed
    } else {
        Flag::Json
    }
}

/// The `json_type` seamless would record for a parsed plain value (`None` for null).
pub fn json_type_of(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Dict(_) => "dict",
        Value::List(_) | Value::Tuple(_) => "list",
        Value::Str(_) | Value::Surrogates(_) => "str",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Bool(_) => "bool",
        _ => return None,
    })
}

/// What a buffer "is" for the mount, and the facts learned on the way: a `.npy` buffer is
/// `binary`, a Seamless mixed container `mixed`, valid JSON (as `plain` parses it) `plain`,
/// other UTF-8 `text`, anything else `bytes`.
pub fn detect_celltype(bytes: &[u8]) -> (CellType, BufferInfo) {
    let mut info = BufferInfo::with_length(bytes.len());
    let celltype = if bytes.starts_with(NPY_MAGIC) {
        info.set_flag(Flag::Numpy, true);
        CellType::Binary
    } else if bytes.starts_with(MIXED_MAGIC) {
        info.set_flag(Flag::SeamlessMixed, true);
        CellType::Mixed
    } else if std::str::from_utf8(bytes).is_err() {
        info.set_flag(Flag::Utf8, false);
        info.set_flag(Flag::Json, false);
        info.set_flag(Flag::Numpy, false);
        info.set_flag(Flag::SeamlessMixed, false);
        CellType::Bytes
    } else if let Ok(value) = celltype::deserialize(bytes, CellType::Plain) {
        match json_type_of(&value) {
            Some(t) => info.set_json_type(t),
            None => info.set_flag(Flag::Json, true),
        }
        CellType::Plain
    } else {
        info.set_flag(Flag::Utf8, true);
        info.set_flag(Flag::Json, false);
        info.set_flag(Flag::Numpy, false);
        info.set_flag(Flag::SeamlessMixed, false);
        CellType::Text
    };
    (celltype, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn true_facts_propagate_false_ones_do_not() {
        let mut info = BufferInfo::default();
        info.set_flag(Flag::JsonNumericScalar, true);
        assert_eq!(
            (info.is_json, info.is_utf8, info.is_numpy),
            (Some(true), Some(true), Some(false))
        );
        // A failed plain → binary learns "not a numeric array"; the JSON facts stay.
        info.set_flag(Flag::JsonNumericArray, false);
        assert_eq!((info.is_json, info.is_utf8), (Some(true), Some(true)));
        info.set_flag(Flag::Numpy, true);
        assert_eq!(
            (info.is_json, info.is_seamless_mixed),
            (Some(false), Some(false))
        );
    }

    #[test]
    fn map_round_trip_keeps_unknown_keys() {
        let cs = "e".repeat(64);
        let v = json!({"length": 13, "is_json": false, "is_utf8": true, "dtype": "<f8",
                       "shape": [2, 3], "str2text": cs, "members": 3, "unknown_field": [1]});
        let info = BufferInfo::from_map(v.as_object().unwrap()).unwrap();
        assert_eq!(info.length, Some(13));
        assert_eq!(info.str2text.unwrap().hex(), cs);
        assert_eq!(info.extra["unknown_field"], json!([1]));
        let back = info.to_map();
        assert_eq!(Json::Object(back.clone()), v);
        assert_eq!(back.keys().next().unwrap(), "length");
        let bad = BufferInfo::from_map(json!({"is_utf8": 1}).as_object().unwrap()).unwrap_err();
        assert_eq!(bad.key, "is_utf8");
        assert!(
            BufferInfo::from_map(json!({"length": null}).as_object().unwrap())
                .unwrap()
                .is_empty()
        );
        let odd = json!({"dtype": 5, "text2str": "not a checksum"});
        let info = BufferInfo::from_map(odd.as_object().unwrap()).unwrap();
        assert_eq!((info.dtype.as_ref(), info.text2str), (None, None));
        assert_eq!(Json::Object(info.to_map()), odd);
    }

    #[test]
    fn merge_lets_newer_facts_win() {
        let mut a = BufferInfo {
            length: Some(3),
            is_numpy: Some(true),
            ..Default::default()
        };
        let b = BufferInfo {
            is_json: Some(true),
            members: Some(2),
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(
            (a.length, a.is_json, a.is_numpy, a.members),
            (Some(3), Some(true), Some(false), Some(2))
        );
    }

    #[test]
    fn partners_write_the_seamless_field_names() {
        let (x, y) = (Checksum::of(b"x"), Checksum::of(b"y"));
        let mut facts = Facts::default();
        facts.partners(x, y, PartnerField::TextStr, true);
        facts.partners(y, x, PartnerField::BytesBinary, false);
        assert_eq!(facts.get(&x).unwrap().text2str, Some(y));
        assert_eq!(facts.get(&y).unwrap().str2text, Some(x));
        assert_eq!(facts.get(&y).unwrap().bytes2binary, Some(x));
        assert_eq!(facts.get(&x).unwrap().binary2bytes, None);
    }

    #[test]
    fn detection_by_magic_and_encoding() {
        assert_eq!(detect_celltype(b"\x93NUMPY\x01\x00").0, CellType::Binary);
        assert_eq!(
            detect_celltype(b"\x94SEAMLESS-MIXED\x0b").0,
            CellType::Mixed
        );
        let (ct, info) = detect_celltype(b"\xff\xfe");
        assert_eq!((ct, info.is_utf8), (CellType::Bytes, Some(false)));
    }
}
