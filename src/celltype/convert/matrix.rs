//! The conversion matrix between the 13 cell types, as data (seamless-core 0.1.4
//! `checksum/conversion.py`, spec §3): each ordered pair's own table entry, the derived legs and
//! effective class, and the chain of steps the reference converter really executes
//! (`make_conversion_chain`, conversions.md §2).

use std::fmt;

use crate::celltype::CellType;
use CellType::*;

/// The class of a terminal conversion (one of seamless-core's sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Checksum kept, always works.
    Trivial,
    /// Checksum kept, can fail.
    Reinterpret,
    /// May give a new buffer, always works on a valid input.
    Reformat,
    /// May give a new buffer, can fail.
    Possible,
    /// A value-level conversion (binary ↔ plain, and everything with `checksum`).
    Values,
    /// Never allowed.
    Forbidden,
}

impl Class {
    /// The name used in seamless-core and the vectors (`"trivial"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Class::Trivial => "trivial",
            Class::Reinterpret => "reinterpret",
            Class::Reformat => "reformat",
            Class::Possible => "possible",
            Class::Values => "values",
            Class::Forbidden => "forbidden",
        }
    }

    /// Short code used in the `seamfs conversions` grid.
    pub fn abbrev(self) -> &'static str {
        match self {
            Class::Trivial => "T",
            Class::Reinterpret => "RI",
            Class::Reformat => "RF",
            Class::Possible => "P",
            Class::Values => "V",
            Class::Forbidden => "F",
        }
    }

    /// True when a successful conversion keeps the checksum.
    pub fn keeps_checksum(self) -> bool {
        matches!(self, Class::Trivial | Class::Reinterpret)
    }

    /// True when the conversion cannot fail on a valid input.
    pub fn always_works(self) -> bool {
        matches!(self, Class::Trivial | Class::Reformat)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pair's own entry in the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The pair is in one of the class sets.
    Own(Class),
    /// Handled as another pair (`conversion_equivalent`).
    Equivalent(CellType, CellType),
    /// Convert to the middle cell type first (`conversion_chain`).
    Chain(CellType),
}

impl Entry {
    /// The vectors' `category` name.
    pub fn category(self) -> &'static str {
        match self {
            Entry::Own(class) => class.name(),
            Entry::Equivalent(..) => "equivalent",
            Entry::Chain(_) => "chain",
        }
    }
}

const TRIVIAL: [(CellType, CellType); 13] = [
    (Text, Bytes),
    (Ipython, Text),
    (Python, Text),
    (Python, Ipython),
    (Yaml, Text),
    (Plain, Yaml),
    (Plain, Bytes),
    (Binary, Mixed),
    (Plain, Mixed),
    (Str, Plain),
    (Int, Plain),
    (Float, Plain),
    (Bool, Plain),
];

/// The reverse of a trivial pair is reinterpret, except these.
const NOT_REINTERPRET: [(CellType, CellType); 6] = [
    (Ipython, Python),
    (Yaml, Plain),
    (Plain, Str),
    (Plain, Int),
    (Plain, Float),
    (Plain, Bool),
];

const REFORMAT: [(CellType, CellType); 19] = [
    (Bytes, Binary),
    (Bytes, Mixed),
    (Binary, Bytes),
    (Mixed, Bytes),
    (Plain, Text),
    (Text, Plain),
    (Text, Str),
    (Str, Text),
    (Yaml, Plain),
    (Ipython, Python),
    (Int, Str),
    (Float, Str),
    (Bool, Str),
    (Int, Float),
    (Bool, Int),
    (Float, Int),
    (Int, Bool),
    (Float, Bool),
    (Bool, Float),
];

const POSSIBLE: [(CellType, CellType); 14] = [
    (Binary, Int),
    (Binary, Float),
    (Binary, Bool),
    (Str, Int),
    (Str, Float),
    (Str, Bool),
    (Plain, Str),
    (Plain, Int),
    (Plain, Float),
    (Plain, Bool),
    (Mixed, Str),
    (Mixed, Int),
    (Mixed, Float),
    (Mixed, Bool),
];

const FORBIDDEN: [(CellType, CellType); 16] = [
    (Python, Yaml),
    (Python, Int),
    (Python, Float),
    (Python, Bool),
    (Ipython, Yaml),
    (Ipython, Int),
    (Ipython, Float),
    (Ipython, Bool),
    (Yaml, Python),
    (Yaml, Ipython),
    (Int, Python),
    (Int, Ipython),
    (Float, Python),
    (Float, Ipython),
    (Bool, Python),
    (Bool, Ipython),
];

const EQUIVALENT: [((CellType, CellType), (CellType, CellType)); 32] = [
    ((Yaml, Str), (Text, Str)),
    ((Text, Mixed), (Text, Str)),
    ((Yaml, Mixed), (Text, Str)),
    ((Python, Str), (Text, Str)),
    ((Ipython, Str), (Text, Str)),
    ((Python, Mixed), (Text, Str)),
    ((Ipython, Mixed), (Text, Str)),
    ((Python, Plain), (Text, Str)),
    ((Ipython, Plain), (Text, Str)),
    ((Str, Yaml), (Str, Text)),
    ((Str, Python), (Str, Text)),
    ((Str, Ipython), (Str, Text)),
    ((Python, Bytes), (Python, Text)),
    ((Ipython, Bytes), (Ipython, Text)),
    ((Str, Mixed), (Str, Binary)),
    ((Int, Mixed), (Int, Plain)),
    ((Float, Mixed), (Float, Plain)),
    ((Bool, Mixed), (Bool, Plain)),
    ((Str, Binary), (Plain, Binary)),
    ((Float, Binary), (Plain, Binary)),
    ((Int, Binary), (Plain, Binary)),
    ((Bool, Binary), (Plain, Binary)),
    ((Python, Binary), (Text, Binary)),
    ((Ipython, Binary), (Text, Binary)),
    ((Yaml, Bytes), (Text, Bytes)),
    ((Str, Bytes), (Plain, Bytes)),
    ((Int, Bytes), (Plain, Bytes)),
    ((Float, Bytes), (Plain, Bytes)),
    ((Bool, Bytes), (Plain, Bytes)),
    ((Int, Text), (Plain, Text)),
    ((Float, Text), (Plain, Text)),
    ((Bool, Text), (Plain, Text)),
];

const CHAIN: [((CellType, CellType), CellType); 29] = [
    ((Mixed, Text), Plain),
    ((Mixed, Yaml), Text),
    ((Mixed, Ipython), Text),
    ((Mixed, Python), Text),
    ((Binary, Text), Plain),
    ((Binary, Yaml), Text),
    ((Binary, Ipython), Text),
    ((Binary, Python), Text),
    ((Bytes, Str), Plain),
    ((Bytes, Float), Plain),
    ((Bytes, Int), Plain),
    ((Bytes, Bool), Plain),
    ((Bytes, Yaml), Text),
    ((Bytes, Ipython), Text),
    ((Bytes, Python), Text),
    ((Binary, Str), Bytes),
    ((Plain, Python), Text),
    ((Plain, Ipython), Text),
    ((Text, Binary), Mixed),
    ((Text, Float), Plain),
    ((Text, Int), Plain),
    ((Text, Bool), Plain),
    ((Yaml, Binary), Plain),
    ((Yaml, Int), Plain),
    ((Yaml, Float), Plain),
    ((Yaml, Bool), Plain),
    ((Int, Yaml), Plain),
    ((Float, Yaml), Plain),
    ((Bool, Yaml), Plain),
];

/// The pair's own table entry; `None` for `from == to`.
pub fn entry(from: CellType, to: CellType) -> Option<Entry> {
    if from == to {
        return None;
    }
    let pair = (from, to);
    if let Some((_, eq)) = EQUIVALENT.iter().find(|(p, _)| *p == pair) {
        return Some(Entry::Equivalent(eq.0, eq.1));
    }
    if let Some((_, via)) = CHAIN.iter().find(|(p, _)| *p == pair) {
        return Some(Entry::Chain(*via));
    }
    Some(Entry::Own(own_class(pair)))
}

/// The class set a pair belongs to directly (every pair that is neither equivalent nor chained).
fn own_class(pair: (CellType, CellType)) -> Class {
    let reversed = (pair.1, pair.0);
    if TRIVIAL.contains(&pair) {
        Class::Trivial
    } else if TRIVIAL.contains(&reversed) && !NOT_REINTERPRET.contains(&pair) {
        Class::Reinterpret
    } else if REFORMAT.contains(&pair) {
        Class::Reformat
    } else if POSSIBLE.contains(&pair) {
        Class::Possible
    } else if FORBIDDEN.contains(&pair) {
        Class::Forbidden
    } else {
        // The rest is exactly `conversion_values`: binary↔plain and every pair with checksum
        // (checked by the `partition` test).
        Class::Values
    }
}

/// A terminal conversion: a pair with its own class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub from: CellType,
    pub to: CellType,
    pub class: Class,
}

/// The terminal pairs a conversion reduces to when equivalences are followed all the way and
/// chains are split (the vectors' `legs`; spec §3's derivation).
pub fn legs(from: CellType, to: CellType) -> Vec<Leg> {
    match entry(from, to) {
        None => Vec::new(),
        Some(Entry::Own(class)) => vec![Leg { from, to, class }],
        Some(Entry::Equivalent(a, b)) => legs(a, b),
        Some(Entry::Chain(via)) => {
            let mut out = legs(from, via);
            out.extend(legs(via, to));
            out
        }
    }
}

/// The class of the whole conversion, combined from its legs: forbidden or values if any leg is;
/// checksum-keeping only if every leg keeps it; always working only if every leg always works.
pub fn effective_class(from: CellType, to: CellType) -> Option<Class> {
    let legs = legs(from, to);
    if legs.is_empty() {
        return None;
    }
    let classes: Vec<Class> = legs.iter().map(|l| l.class).collect();
    let class = if classes.contains(&Class::Forbidden) {
        Class::Forbidden
    } else if classes.contains(&Class::Values) {
        Class::Values
    } else {
        let keeps = classes.iter().all(|c| c.keeps_checksum());
        let works = classes.iter().all(|c| c.always_works());
        match (keeps, works) {
            (true, true) => Class::Trivial,
            (true, false) => Class::Reinterpret,
            (false, true) => Class::Reformat,
            (false, false) => Class::Possible,
        }
    };
    Some(class)
}

/// One step the converter executes: the pair as it appears in the chain (`from → to`), and the
/// terminal pair that really runs after one level of equivalence (`run`), e.g. the step
/// `text → mixed` runs as `text → str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub from: CellType,
    pub to: CellType,
    pub run: Leg,
}

/// The steps the reference converter executes for `from → to` (legacy `make_conversion_chain`
/// followed by `try_convert_single`'s single equivalence level). This is not the same as
/// `legs`: `str → mixed` runs `str → plain → mixed` (both trivial) although its table entry is
/// `≡ str → binary`. Empty for `from == to`.
pub fn steps(from: CellType, to: CellType) -> Vec<Step> {
    if from == to {
        return Vec::new();
    }
    let mut path = vec![from];
    path.extend(chain_targets(from, to));
    path.windows(2).map(|w| step(w[0], w[1])).collect()
}

/// `make_conversion_chain`: the cell types visited after `from`. While the pair is equivalent
/// it is replaced, and a changed source becomes a stop of its own; the final target always
/// stays `to`.
fn chain_targets(mut from: CellType, to: CellType) -> Vec<CellType> {
    let mut pair = (from, to);
    let mut out = Vec::new();
    while let Some(Entry::Equivalent(a, b)) = entry(pair.0, pair.1) {
        pair = (a, b);
        if a != from {
            from = a;
            out.push(a);
        }
    }
    match entry(pair.0, pair.1) {
        Some(Entry::Chain(via)) => {
            out.extend(chain_targets(from, via));
            out.extend(chain_targets(via, to));
        }
        _ => out.push(to),
    }
    out
}

/// One chain step, resolved by one level of equivalence.
fn step(from: CellType, to: CellType) -> Step {
    let (a, b) = match entry(from, to) {
        Some(Entry::Equivalent(a, b)) => (a, b),
        _ => (from, to),
    };
    let class = match entry(a, b) {
        Some(Entry::Own(class)) => class,
        // Never reached: the chain builder resolves every chain and nested equivalence
        // (checked for all 156 pairs by the `steps_are_terminal` test).
        other => unreachable!("step {from}→{to} resolves to {other:?}"),
    };
    Step {
        from,
        to,
        run: Leg {
            from: a,
            to: b,
            class,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_pairs() -> impl Iterator<Item = (CellType, CellType)> {
        CellType::ALL
            .into_iter()
            .flat_map(|a| CellType::ALL.into_iter().map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
    }

    #[test]
    fn partition() {
        let mut counts = std::collections::HashMap::new();
        for (a, b) in all_pairs() {
            *counts.entry(entry(a, b).unwrap().category()).or_insert(0) += 1;
        }
        let expected = [
            ("trivial", 13),
            ("reinterpret", 7),
            ("reformat", 19),
            ("possible", 14),
            ("values", 26),
            ("forbidden", 16),
            ("equivalent", 32),
            ("chain", 29),
        ];
        for (name, n) in expected {
            assert_eq!(counts[name], n, "{name}");
        }
        // Every values pair is binary↔plain or involves checksum.
        for (a, b) in all_pairs() {
            if entry(a, b) == Some(Entry::Own(Class::Values)) {
                assert!(
                    a == Checksum
                        || b == Checksum
                        || matches!((a, b), (Binary, Plain) | (Plain, Binary))
                );
            }
        }
    }

    #[test]
    fn steps_are_terminal() {
        for (a, b) in all_pairs() {
            let steps = steps(a, b);
            assert_eq!(steps.first().unwrap().from, a);
            assert_eq!(steps.last().unwrap().to, b);
            for w in steps.windows(2) {
                assert_eq!(w[0].to, w[1].from);
            }
        }
    }

    #[test]
    fn executed_steps_differ_from_legs_where_documented() {
        let run = |a, b| {
            steps(a, b)
                .iter()
                .map(|s| (s.run.from, s.run.to))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(Str, Mixed), vec![(Str, Plain), (Plain, Mixed)]);
        assert_eq!(
            run(Python, Binary),
            vec![(Python, Text), (Text, Str), (Mixed, Binary)]
        );
        assert_eq!(run(Python, Plain), vec![(Python, Text), (Text, Plain)]);
        assert_eq!(run(Str, Python), vec![(Str, Text)]);
        assert_eq!(
            run(Binary, Str),
            vec![(Binary, Bytes), (Bytes, Plain), (Plain, Str)]
        );
        assert_eq!(
            legs(Str, Mixed),
            vec![Leg {
                from: Plain,
                to: Binary,
                class: Class::Values
            }]
        );
    }
}
