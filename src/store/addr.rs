//! Tiers from address strings, like tvix castore's `from_addr`:
//!
//! * `ram://?size=1G` (soft cap; `&hard=2G` for the hard cap, default twice the soft cap;
//!   without `size`, defaults from the machine's memory): a `MemoryTier`.
//! * `file:///abs/path`: a buffer directory (`buffers/<2 hex>/<hex>`) as a tier, e.g. below a
//!   store's own disk tier.
//!
//! The remote-tier work adds `http://` (a hashserver) and `s3://`.

use std::sync::Arc;

use super::{DiskStore, MemoryTier, RamConfig, StoreError, Tier};

/// Build the tier an address names.
pub fn open(address: &str) -> Result<Arc<dyn Tier>, StoreError> {
    let invalid = |why: &str| {
        StoreError::Invalid(format!(
            "bad tier address '{address}': {why} (examples: ram://?size=1G, file:///var/buffers)"
        ))
    };
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| invalid("no scheme"))?;
    match scheme {
        "ram" => {
            let query = rest.strip_prefix('?').unwrap_or(rest);
            Ok(Arc::new(MemoryTier::new(
                ram_config(query).map_err(|e| invalid(&e))?,
            )))
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(invalid("a file:// address needs an absolute path"));
            }
            Ok(Arc::new(DiskStore::open_named(rest, "file")?))
        }
        _ => Err(invalid("unknown scheme")),
    }
}

/// `size=SOFT&hard=HARD` (both optional).
fn ram_config(query: &str) -> Result<RamConfig, String> {
    let (mut soft, mut hard) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("size", v)) => soft = Some(parse_size(v)?),
            Some(("hard", v)) => hard = Some(parse_size(v)?),
            _ => return Err(format!("unknown parameter '{pair}'")),
        }
    }
    Ok(match soft {
        Some(soft) => RamConfig::new(soft, hard),
        None => RamConfig::from_machine(),
    })
}

/// `SOFT[,HARD]` as `--ram-cache` takes it.
pub fn parse_ram_caps(text: &str) -> Result<RamConfig, String> {
    let (soft, hard) = match text.split_once(',') {
        Some((soft, hard)) => (soft, Some(parse_size(hard)?)),
        None => (text, None),
    };
    let config = RamConfig::new(parse_size(soft)?, hard);
    if hard.is_some_and(|h| h < config.soft_cap) {
        return Err(format!(
            "in '{text}' the hard cap is below the soft cap (give SOFT,HARD with SOFT <= HARD)"
        ));
    }
    Ok(config)
}

/// Parse a size such as `64M`, `1G`, `512k` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 64M, 1G, 1048576)"))?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("unknown size unit in '{text}' (use K, M, G or T)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn ram_caps() {
        let c = parse_ram_caps("16M").unwrap();
        assert_eq!((c.soft_cap, c.hard_cap), (16 << 20, 32 << 20));
        let c = parse_ram_caps("16M,20M").unwrap();
        assert_eq!((c.soft_cap, c.hard_cap), (16 << 20, 20 << 20));
        assert!(parse_ram_caps("16M,8M").is_err());
        let d = RamConfig::from_machine();
        assert!(d.soft_cap > 0 && d.soft_cap < d.hard_cap);
    }

    #[test]
    fn addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ram = open("ram://?size=1M&hard=2M").unwrap();
        assert_eq!(ram.stats().tiers[0].capacity, Some(1 << 20));
        let file = open(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(file.stats().tiers[0].tier, "file");
        assert!(dir.path().join("buffers").is_dir());
        for bad in [
            "ram:/x",
            "ftp://x",
            "file://relative",
            "ram://?size=1Q",
            "ram://?x=1",
        ] {
            assert!(open(bad).is_err(), "{bad}");
        }
    }
}
