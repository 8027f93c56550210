//! Tiers from address strings, like tvix castore's `from_addr`:
//!
//! * `ram://?size=1G` (soft cap; `&hard=2G` for the hard cap, default twice the soft cap;
//!   without `size`, defaults from the machine's memory): a `MemoryTier`.
//! * `file:///abs/path[?layout=flat|prefix]`: a hashserver buffer folder (layout detected;
//!   `layout` only chooses for a new, empty folder), or a seamfs store directory (one with
//!   `buffers/`), e.g. on a cluster filesystem.
//! * `http://HOST:PORT` / `https://…`: a hashserver.
//! * `s3://BUCKET/PREFIX`: an S3-compatible bucket (see `s3` for the key layout and settings).
//!
//! Network tiers take `timeout=10s`, `retries=2`, `negative-ttl=2s`, `down-for=1s` as query
//! parameters (see `remote::RemoteOptions`); an `s3://` address also takes `object_store`'s S3
//! settings there.

use std::sync::Arc;
use std::time::Duration;

use super::http::Hashserver;
use super::remote::{RemoteOptions, RemoteTier};
use super::s3::S3;
use super::{DiskStore, Layout, MemoryTier, RamConfig, StoreError, Tier};

/// Build the tier an address names.
pub fn open(address: &str) -> Result<Arc<dyn Tier>, StoreError> {
    let invalid = |why: &str| {
        StoreError::Invalid(format!(
            "bad tier address '{address}': {why} (examples: ram://?size=1G, file:///var/buffers, \
             http://127.0.0.1:5813, s3://bucket/prefix)"
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
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !path.starts_with('/') {
                return Err(invalid("a file:// address needs an absolute path"));
            }
            let layout = match query {
                "" => None,
                "layout=flat" => Some(Layout::Flat),
                "layout=prefix" => Some(Layout::Prefix),
                other => return Err(invalid(&format!("unknown parameter '{other}'"))),
            };
            if std::path::Path::new(path).join("buffers").is_dir() && layout.is_none() {
                return Ok(Arc::new(DiskStore::open_named(path, "file")?));
            }
            Ok(Arc::new(DiskStore::open_folder(path, layout)?))
        }
        "http" | "https" => {
            let (base, query) = address.split_once('?').unwrap_or((address, ""));
            let (options, rest) = remote_options(query).map_err(|e| invalid(&e))?;
            if let Some((key, _)) = rest.first() {
                return Err(invalid(&format!("unknown parameter '{key}'")));
            }
            let backend = Hashserver::new(base, &options).map_err(|e| invalid(&e))?;
            Ok(RemoteTier::new(backend, options)?)
        }
        "s3" => {
            let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (options, settings) = remote_options(query).map_err(|e| invalid(&e))?;
            let shown = address.split_once('?').map_or(address, |(a, _)| a);
            let backend = S3::new(shown, bucket, &settings, &options).map_err(|e| invalid(&e))?;
            Ok(RemoteTier::new(backend, options)?)
        }
        _ => Err(invalid("unknown scheme")),
    }
}

/// A network tier's options from `key=value&…`; the pairs that are not options are returned.
fn remote_options(query: &str) -> Result<(RemoteOptions, Vec<(String, String)>), String> {
    let mut options = RemoteOptions::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("parameter '{pair}' has no value"))?;
        match key {
            "timeout" => options.timeout = parse_duration(value)?,
            "retries" => {
                options.retries = value
                    .parse()
                    .map_err(|_| format!("retries={value} is not a count"))?
            }
            "negative-ttl" => options.negative_ttl = parse_duration(value)?,
            "down-for" => options.down_for = parse_duration(value)?,
            _ => rest.push((key.to_string(), value.to_string())),
        }
    }
    Ok((options, rest))
}

/// `500ms`, `10s`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration (examples: 500ms, 10s, 2m)");
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
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
        assert!(dir.path().join(".HASHSERVER_PREFIX").is_file());
        let flat = tempfile::tempdir().unwrap();
        let tier = open(&format!("file://{}?layout=flat", flat.path().display())).unwrap();
        let cs = tier
            .put(&crate::buffer::Buffer::new(b"flat".to_vec()))
            .unwrap();
        assert!(flat.path().join(cs.hex()).is_file());
        let again = open(&format!("file://{}", flat.path().display())).unwrap();
        assert!(again.has(&cs).unwrap(), "flat layout detected");
        let store = tempfile::tempdir().unwrap();
        std::fs::create_dir(store.path().join("buffers")).unwrap();
        let tier = open(&format!("file://{}", store.path().display())).unwrap();
        let cs = tier
            .put(&crate::buffer::Buffer::new(b"store".to_vec()))
            .unwrap();
        let hex = cs.hex();
        assert!(
            store
                .path()
                .join("buffers")
                .join(&hex[..2])
                .join(&hex)
                .is_file()
        );
        let http = open("http://127.0.0.1:1/?timeout=500ms&retries=0").unwrap();
        assert_eq!(http.stats().tiers[0].tier, "http");
        let s3 = open("s3://bucket/prefix?endpoint=http://127.0.0.1:1&allow_http=true").unwrap();
        assert_eq!(s3.stats().tiers[0].tier, "s3");
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in [
            "ram:/x",
            "ftp://x",
            "file://relative",
            "ram://?size=1Q",
            "ram://?x=1",
            "file:///tmp/x?layout=round",
            "http://127.0.0.1:1?timeout=soon",
            "http://127.0.0.1:1?colour=blue",
            "s3://?region=x",
            "s3://b/p?colour=blue",
        ] {
            assert!(open(bad).is_err(), "{bad}");
        }
    }
}
