//! `seamfs convert` (one buffer from one cell type to another) and `seamfs conversions` (the
//! conversion matrix as a table).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::buffer::Buffer;
use crate::celltype::CellType;
use crate::celltype::convert::{self, Output, matrix};

/// Arguments of `seamfs convert`.
#[derive(clap::Args)]
#[command(after_help = CONVERT_HELP)]
pub struct ConvertArgs {
    /// Cell type of the input buffer.
    #[arg(long, value_name = "CELLTYPE")]
    from: CellType,
    /// Cell type to convert to.
    #[arg(long, value_name = "CELLTYPE")]
    to: CellType,
    /// Print the checksum of the result instead of the buffer.
    #[arg(long)]
    checksum: bool,
    /// Also print, on stderr, the BufferInfo facts learned (JSON, per checksum).
    #[arg(long)]
    facts: bool,
    /// Input file (default: stdin).
    file: Option<PathBuf>,
}

/// Arguments of `seamfs conversions`.
#[derive(clap::Args)]
#[command(after_help = CONVERSIONS_HELP)]
pub struct ConversionsArgs {
    /// Show one pair: the source cell type.
    #[arg(long, value_name = "CELLTYPE", requires = "to")]
    from: Option<CellType>,
    /// Show one pair: the target cell type.
    #[arg(long, value_name = "CELLTYPE", requires = "from")]
    to: Option<CellType>,
}

const CONVERT_HELP: &str = "\
Reads the buffer from FILE (or stdin) and writes the converted buffer to stdout. A conversion
that keeps the checksum writes the input unchanged. Forbidden conversions, and buffers that are
not valid for the conversion, fail with a message naming both cell types and the reason.
`seamfs conversions` shows what converts to what; docs/compat.md lists where seamfs differs
from Seamless.

Cell types: binary mixed text python ipython plain yaml str bytes int float bool checksum

Examples:
  printf 'hello\\n' | seamfs convert --from text --to str        # \"hello\"
  seamfs convert --from plain --to binary data.json > data.npy
  seamfs convert --from binary --to plain --checksum data.npy";

const CONVERSIONS_HELP: &str = "\
Without options: a grid (rows: from, columns: to) of the conversion classes, with a legend.
With --from and --to: one pair in detail (its table entry, the terminal conversions it reduces
to, and the steps the converter really runs).";

pub fn run_convert(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let input = super::read_input(args.file.as_deref())?;
    let result = convert::convert(&Buffer::new(input), args.from, args.to);
    let (output, facts) = match result {
        Ok(c) => (c.output, c.facts),
        Err(e) => {
            if args.facts {
                print_facts(&e.facts)?;
            }
            return Err(e.into());
        }
    };
    if args.facts {
        print_facts(&facts)?;
    }
    let mut stdout = std::io::stdout().lock();
    match (output, args.checksum) {
        (out, true) => writeln!(stdout, "{}", out.checksum())?,
        (Output::Buffer(b), false) => stdout.write_all(b.as_slice())?,
        (Output::Reference(cs), false) => anyhow::bail!(
            "the result is the checksum {cs} that the input holds; its buffer is not available \
             here (use --checksum to print the checksum)"
        ),
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn print_facts(facts: &crate::buffer_info::Facts) -> anyhow::Result<()> {
    let map: serde_json::Map<String, serde_json::Value> = facts
        .iter()
        .map(|(cs, info)| (cs.hex(), serde_json::Value::Object(info.to_map())))
        .collect();
    eprintln!("{}", serde_json::to_string_pretty(&map)?);
    Ok(())
}

pub fn run_conversions(args: ConversionsArgs) -> anyhow::Result<ExitCode> {
    let text = match (args.from, args.to) {
        (Some(from), Some(to)) => pair_details(from, to),
        _ => grid(),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Three-letter column headers, so that the grid fits 80 columns.
fn short_name(c: CellType) -> &'static str {
    match c {
        CellType::Binary => "bin",
        CellType::Mixed => "mix",
        CellType::Text => "txt",
        CellType::Python => "py",
        CellType::Ipython => "ipy",
        CellType::Plain => "pln",
        CellType::Yaml => "yml",
        CellType::Str => "str",
        CellType::Bytes => "byt",
        CellType::Int => "int",
        CellType::Float => "flt",
        CellType::Bool => "bol",
        CellType::Checksum => "cks",
    }
}

/// One grid cell: the pair's effective class, marked `=` when the pair is handled as an
/// equivalent pair and `+` when it is a chain through another cell type.
fn cell(from: CellType, to: CellType) -> String {
    let (Some(entry), Some(class)) = (matrix::entry(from, to), matrix::effective_class(from, to))
    else {
        return "·".into();
    };
    let mark = match entry {
        matrix::Entry::Own(_) => "",
        matrix::Entry::Equivalent(..) => "=",
        matrix::Entry::Chain(_) => "+",
    };
    format!("{mark}{}", class.abbrev())
}

fn grid() -> String {
    let mut out = String::from("from \\ to ");
    for to in CellType::ALL {
        out.push_str(&format!("{:>5}", short_name(to)));
    }
    out.push('\n');
    for from in CellType::ALL {
        out.push_str(&format!("{:<10}", from.name()));
        for to in CellType::ALL {
            out.push_str(&format!("{:>5}", cell(from, to)));
        }
        out.push('\n');
    }
    out.push_str(LEGEND);
    out
}

const LEGEND: &str = "
T   trivial      checksum kept, always works
RI  reinterpret  checksum kept if the buffer is valid as the target
RF  reformat     may give a new buffer; works on any valid source
P   possible     may give a new buffer; can fail
V   values       value-level: binary <-> plain, and anything with checksum
F   forbidden    never converts
=X  handled as an equivalent pair of class X
+X  a chain through another cell type, of combined class X
·   same cell type
Columns: bin=binary mix=mixed txt=text py=python ipy=ipython pln=plain yml=yaml
         str byt=bytes int flt=float bol=bool cks=checksum
One pair in detail: seamfs conversions --from A --to B
";

fn pair_details(from: CellType, to: CellType) -> String {
    let Some(entry) = matrix::entry(from, to) else {
        return format!("{from} → {to}: same cell type; the buffer is used as it is\n");
    };
    let table = match entry {
        matrix::Entry::Own(class) => class.name().to_string(),
        matrix::Entry::Equivalent(a, b) => format!("equivalent to {a} → {b}"),
        matrix::Entry::Chain(via) => format!("chain via {via}"),
    };
    let effective = matrix::effective_class(from, to).map_or("", |c| c.name());
    let legs: Vec<String> = matrix::legs(from, to)
        .iter()
        .map(|l| format!("{} → {} ({})", l.from, l.to, l.class))
        .collect();
    let steps: Vec<String> = matrix::steps(from, to)
        .iter()
        .map(|s| {
            let runs = if (s.run.from, s.run.to) == (s.from, s.to) {
                String::new()
            } else {
                format!(", runs as {} → {}", s.run.from, s.run.to)
            };
            format!("{} → {} ({}{runs})", s.from, s.to, s.run.class)
        })
        .collect();
    format!(
        "{from} → {to}\n  table entry:     {table}\n  effective class: {effective}\n  legs:            {}\n  steps run:       {}\n",
        legs.join(" ; "),
        steps.join(" ; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_13_rows_of_13_cells() {
        let g = grid();
        let rows: Vec<&str> = g.lines().skip(1).take(13).collect();
        assert!(rows[0].starts_with("binary"));
        assert!(
            rows.iter().all(|r| r.split_whitespace().count() == 14),
            "{g}"
        );
        assert!(g.lines().all(|l| l.chars().count() <= 80), "{g}");
    }

    #[test]
    fn details_show_what_runs() {
        let d = pair_details(CellType::Str, CellType::Mixed);
        assert!(d.contains("equivalent to str → binary"), "{d}");
        assert!(
            d.contains("str → plain (trivial) ; plain → mixed (trivial)"),
            "{d}"
        );
    }
}
