//! `seamfs mount MOUNTPOINT`: checks (FUSE device, mount point, store lock), then mounts the
//! namespace with the HTTP database and the buffer server beside it, in the foreground or as a daemon; SIGINT/SIGTERM
//! unmount cleanly.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use fuser::{Config, MountOption, Session};
use nix::sys::signal::{SigSet, Signal};

use crate::fs::fuse::SeamFs;
use crate::fs::namespace::{Namespace, Options};
use crate::hashserver;
use crate::http::BackgroundServer;
use crate::store::addr::{parse_ram_caps, parse_size};
use crate::store::{RamConfig, Store, StoreOptions};

/// What `seamfs mount --help` shows after the options: the layout of the mount point.
const LAYOUT_HELP: &str = "\
Layout of the mount point:
  by-checksum/<hex>      every stored buffer, read-only, bytes as stored
  as-<celltype>/<hex>    a buffer converted to a cell type (binary, mixed, text, python, ipython,
                         plain, yaml, str, bytes, int, float, bool, checksum); opened by name,
                         the directories are not listed
  .seamfs/stats          counters of the store tiers and of the mount (JSON)
  anything else          a writable tree kept in the store: files, directories, symlinks
  F.CHECKSUM             virtual, beside each file F: its SHA-256 and a newline, once F is closed
  D.INDEX, D.CHECKSUM    virtual, beside each directory D: what seamless-checksum-index writes

Writing F.CHECKSUM (or D.INDEX) is a claim: accepted if it matches, refused (EIO) if not.
Files carry the xattrs user.seamless.checksum and (once known) user.seamless.celltype.
The Seamless database protocol is served over HTTP on --db-host:--db-port, from the store's
seamless.db; buffers written through the mount appear in buffer_info at once. The buffer server
(hashserver protocol, for seamless-remote BufferClient) is served on --buffer-host:--buffer-port
over the store: a PUT shows under by-checksum/ at once, a file written here is served by checksum.

Example:
  mkdir -p ~/mnt && seamfs mount ~/mnt &
  cp results.npy ~/mnt/ && cat ~/mnt/results.npy.CHECKSUM
  cat ~/mnt/as-plain/$(cat ~/mnt/results.npy.CHECKSUM)
  curl -s -X GET localhost:5522 -d '{\"type\":\"buffer_info\",\"checksum\":\"<hex>\"}'

Remotes (buffers the store lacks are fetched, verified, on lookup, and kept in the store;
`by-checksum/` still lists only the store's own buffers; writes are pushed):
  seamfs mount ~/mnt --remote http://127.0.0.1:5813 --push http://127.0.0.1:5813
  seamfs mount ~/mnt --remote file:///shared/buffers --disk-cache 20G
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true seamfs mount ~/mnt \\
      --remote s3://buffers/seamless --push s3://buffers/seamless

An existing Seamless deployment, in place (hashserver and seamless-database keep running on the
same files; nothing is copied or converted; the tree goes to <store>/seamfs.db):
  seamfs mount ~/mnt --buffers ~/.seamless/buffers --database ~/.seamless/database/seamless.db
  seamfs mount ~/mnt --buffers /data/buffers --read-only     # writes nothing into /data/buffers";

/// Options of `seamfs mount`.
#[derive(clap::Args)]
#[command(after_help = LAYOUT_HELP)]
pub struct Args {
    /// Empty directory to mount on.
    mountpoint: PathBuf,
    /// Store directory (buffers/, seamless.db). Default: $XDG_DATA_HOME/seamfs (~/.local/share/seamfs).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Address the HTTP database listens on.
    #[arg(long, default_value = "127.0.0.1")]
    db_host: String,
    /// Port of the HTTP database (0 picks a free port and logs it).
    #[arg(long, default_value_t = 5522)]
    db_port: u16,
    /// Serve the HTTP database on the first free port in START..=END instead of --db-port.
    #[arg(long, num_args = 2, value_names = ["START", "END"], conflicts_with = "db_port")]
    db_port_range: Option<Vec<u16>>,
    /// Do not serve the HTTP database.
    #[arg(long)]
    no_db: bool,
    #[command(flatten)]
    http: super::HttpLimitArgs,
    /// Address the buffer server (hashserver protocol) listens on.
    #[arg(long, default_value = "127.0.0.1")]
    buffer_host: String,
    /// Port of the buffer server (0, the default: a free port, logged).
    #[arg(long, default_value_t = 0)]
    buffer_port: u16,
    /// Do not serve the buffer server.
    #[arg(long)]
    no_buffer_server: bool,
    /// Mount read-only (the tree cannot be changed; nothing is written to --buffers or
    /// --database).
    #[arg(long)]
    read_only: bool,
    /// Use a Seamless deployment's hashserver buffer directory in place as the store's disk
    /// tier (prefix or flat layout, detected as hashserver does: `.HASHSERVER_PREFIX` means
    /// prefix). The hashserver may keep serving it. gc refuses such a store.
    #[arg(long, value_name = "BUFFERDIR")]
    buffers: Option<PathBuf>,
    /// Use a seamless-database file in place for the records (BufferInfo, expressions …; the
    /// HTTP database serves it). It must exist; it is not converted. The tree and seamfs's other
    /// tables go to <store>/seamfs.db, so the store must be mounted with --database from then on.
    #[arg(long, value_name = "DATABASE_DIR/seamless.db")]
    database: Option<PathBuf>,
    /// List the virtual sidecars (F.CHECKSUM, D.INDEX, D.CHECKSUM) in directory listings, so that
    /// `cp -r`, `tar` and `rsync` out of the mount carry them. By default they are looked up by
    /// name but not listed.
    #[arg(long)]
    list_sidecars: bool,
    /// Let other users use the mount, with permissions checked by the kernel as on a local
    /// filesystem (needs root, or `user_allow_other` in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// Mount even if the mount point is not empty (its files are hidden until unmounted).
    #[arg(long)]
    nonempty: bool,
    /// RAM tier over the disk tier: SOFT[,HARD] (eviction starts above SOFT; HARD, default
    /// 2 x SOFT, is never exceeded), e.g. 64M or 1G,2G; 0 for none. Default: 1/8 and 1/4 of the
    /// machine's memory.
    #[arg(long, value_name = "SOFT[,HARD]", value_parser = parse_ram_caps)]
    ram_cache: Option<RamConfig>,
    /// A tier below the store's disk tier, e.g. file:///shared/buffers: read through when a
    /// buffer is not in the store.
    #[arg(long, value_name = "ADDRESS")]
    below: Option<String>,
    /// With --below or --remote: bound the store's disk tier to SIZE (e.g. 10G); the least
    /// recently used buffers move to the tier below (with --remote: buffers the remotes have are
    /// dropped and fetched again on demand).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    disk_cache: Option<u64>,
    #[command(flatten)]
    remote: super::RemoteArgs,
    /// Share BufferInfo and view results (expression rows) with the seamless-database at URL
    /// (e.g. http://127.0.0.1:5522): views another mount computed are reused (their buffers come
    /// from --remote). The store's own seamless.db keeps its copy.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Detach and run in the background (logs go to <store>/mount.log).
    #[arg(long)]
    daemon: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store_root = match &args.store {
        Some(dir) => dir.clone(),
        None => default_store()?,
    };
    if !args.daemon {
        init_logging(None);
    }
    check_fuse_device()?;
    check_store_dir(&store_root)?;
    let mountpoint = check_mountpoint(&args.mountpoint, args.nonempty)?;
    let options = StoreOptions {
        ram: match args.ram_cache {
            Some(caps) if caps.soft_cap == 0 => None,
            Some(caps) => Some(caps),
            None => Some(RamConfig::from_machine()),
        },
        below: args.below.clone(),
        disk_cache: args.disk_cache,
        remotes: args.remote.remotes.clone(),
        push: args.remote.push.clone(),
        buffers: args.buffers.clone(),
        database: args.database.clone(),
        deployment_read_only: args.read_only,
    };
    if args.daemon {
        // The store (its lock, threads and database) is opened in the process that serves.
        std::fs::create_dir_all(&store_root)
            .with_context(|| format!("cannot create the store {}", store_root.display()))?;
        return daemonize(&store_root, |ready| {
            match block_signals().and_then(|()| Store::open(&store_root, &options, "mount it")) {
                Ok(store) => serve(&args, store, mountpoint, ready),
                Err(e) => {
                    ready(Err(format!("{e:#}")));
                    Err(e)
                }
            }
        });
    }
    block_signals()?;
    let store = Store::open(&store_root, &options, "mount it")?;
    serve(&args, store, mountpoint, &mut |_| {})
}

/// Mount and serve until unmounted. `ready` is told once the mount is live (with a line for the
/// user) or why it failed.
fn serve(
    args: &Args,
    store: Store,
    mountpoint: PathBuf,
    ready: &mut dyn FnMut(Result<String, String>),
) -> anyhow::Result<ExitCode> {
    // Signals are blocked in every thread (see `run`) and taken by one waiting thread (below).
    let signals = termination_signals();
    let store = Arc::new(store);
    let result = mount_session(args, store.clone(), &mountpoint);
    let (mut session, companions) = match result {
        Ok(s) => s,
        Err(e) => {
            ready(Err(format!("{e:#}")));
            return Err(e);
        }
    };
    let mut unmounter = session.unmount_callable();
    let target = mountpoint.clone();
    std::thread::Builder::new().name("seamfs-signals".into()).spawn(move || {
        if let Ok(signal) = signals.wait() {
            tracing::info!(%signal, "unmounting");
            if let Err(e) = unmounter.unmount() {
                tracing::warn!(
                    error = %e,
                    "mount point busy: detached lazily; serving its open files until they are closed \
                     (signal again to stop now)"
                );
                let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if let Ok(signal) = signals.wait() {
            tracing::warn!(%signal, "stopping now; files still open on the detached mount get errors");
            std::process::exit(1);
        }
    })?;
    raise_readahead(&mountpoint);
    tracing::info!(mountpoint = %mountpoint.display(), "mounted; Ctrl+C or SIGTERM unmounts");
    let mut http = match &companions.http {
        Some(server) => format!("; HTTP database at {}", server.url()),
        None => String::new(),
    };
    if let Some(server) = &companions.buffers {
        http.push_str(&format!("; buffer server at {}", server.url()));
    }
    ready(Ok(format!(
        "seamfs mounted on {}{http}",
        mountpoint.display()
    )));
    session
        .run()
        .context("the FUSE session ended with an error")?;
    // Duplicate content's temp files are removed in the background: leave none behind.
    store.wait_for_removals();
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
    Ok(ExitCode::SUCCESS)
}

/// What must live as long as the mount: the HTTP servers.
struct Companions {
    http: Option<BackgroundServer>,
    buffers: Option<BackgroundServer>,
    /// Hashes kept files once idle (`fs::kept`); stopped before the namespace goes.
    _hasher: crate::fs::ticker::Ticker,
    /// Commits the journal of closed files (`fs::journal`); stopped before the namespace goes.
    _committer: crate::fs::ticker::Ticker,
}

/// Open the namespace, start the HTTP database, mount.
fn mount_session(
    args: &Args,
    store: Arc<Store>,
    mountpoint: &Path,
) -> anyhow::Result<(Session<SeamFs>, Companions)> {
    let db = store.db().clone();
    // The file the records are served from: a deployment's --database, else the store's.
    let db_path = db.records_path().unwrap_or(db.path()).to_path_buf();
    let buffers = buffer_server(args, &store)?;
    let ns = Namespace::new(
        store,
        Options {
            read_only: args.read_only,
            list_sidecars: args.list_sidecars,
            database_url: args.database_url.clone(),
        },
    )?;
    let http = if args.no_db {
        None
    } else {
        let server = serve_db(args, db)?;
        tracing::info!(url = %server.url(), db = %db_path.display(), "HTTP database serving");
        Some(server)
    };
    let mut options = vec![
        MountOption::FSName("seamfs".into()),
        MountOption::Subtype("seamfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if args.read_only {
        options.push(MountOption::RO);
    }
    let mut config = Config::default();
    config.mount_options = options;
    if args.allow_other {
        // The kernel checks permissions (`default_permissions`), as on a local filesystem.
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(2);
    config.clone_fd = true;
    let ns = Arc::new(ns);
    // The HTTP database answers with every closed file committed (see `db::Pending`).
    let pending: std::sync::Weak<Namespace> = Arc::downgrade(&ns);
    ns.store().db().set_pending(pending);
    let hasher = crate::fs::kept::start_hasher(&ns).context("cannot start the kept-file hasher")?;
    let committer = crate::fs::journal::start_committer(&ns)
        .context("cannot start the committer of closed files")?;
    let fs = SeamFs::new(ns);
    let notifier = fs.notifier_slot();
    let session = Session::new(fs, mountpoint, &config)
        .with_context(|| format!("cannot mount on {}", mountpoint.display()))?;
    let _ = notifier.set(session.notifier());
    Ok((
        session,
        Companions {
            http,
            buffers,
            _hasher: hasher,
            _committer: committer,
        },
    ))
}

/// The buffer server (hashserver protocol) over the store: an upload is stored at once, so it
/// shows under `by-checksum/`; files written into the mount are served by checksum.
fn buffer_server(args: &Args, store: &Arc<Store>) -> anyhow::Result<Option<BackgroundServer>> {
    if args.no_buffer_server {
        return Ok(None);
    }
    let options = hashserver::Options {
        writable: !args.read_only,
        lock_timeout: hashserver::DEFAULT_LOCK_TIMEOUT,
    };
    let service = hashserver::Service::new(hashserver::Backend::store(store), options);
    let limits = args.http.limits()?;
    let server = hashserver::spawn(service, &args.buffer_host, args.buffer_port, limits).with_context(|| {
        format!(
            "cannot serve buffers on {}:{} (in use? pass --buffer-port 0 for a free port, or --no-buffer-server)",
            args.buffer_host, args.buffer_port
        )
    })?;
    tracing::info!(url = %server.url(), "buffer server (hashserver protocol) serving");
    Ok(Some(server))
}

/// Block the termination signals before any thread exists (the store starts some), so every
/// thread inherits the mask and only the signal thread (see `serve`) takes them.
fn block_signals() -> anyhow::Result<()> {
    Ok(termination_signals().thread_block()?)
}

fn termination_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// `$XDG_DATA_HOME/seamfs`, else `~/.local/share/seamfs`.
/// The HTTP database on `--db-port`, or on the first free port of `--db-port-range`.
fn serve_db(args: &Args, db: crate::db::Database) -> anyhow::Result<crate::http::BackgroundServer> {
    let ports = match args.db_port_range.as_deref() {
        Some([start, end]) if start <= end => *start..=*end,
        Some(_) => bail!("--db-port-range START END: START must not be above END"),
        None => args.db_port..=args.db_port,
    };
    let limits = args.http.limits()?;
    let mut last = None;
    for port in ports.clone() {
        match crate::http::spawn(db.clone(), &args.db_host, port, !args.read_only, limits) {
            Ok(server) => return Ok(server),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => {
                return Err(e).context(format!(
                    "cannot serve the HTTP database on {}:{port}",
                    args.db_host
                ));
            }
        }
    }
    let tried = if ports.start() == ports.end() {
        format!("{}:{}", args.db_host, ports.start())
    } else {
        format!("{}:{}-{}", args.db_host, ports.start(), ports.end())
    };
    Err(anyhow::anyhow!(
        "cannot serve the HTTP database on {tried}: {} (pass --db-port 0 for a free port, --db-port-range, or --no-db)",
        last.map_or_else(|| "no port".to_string(), |e| e.to_string())
    ))
}

/// A store is a directory (created if missing): say so plainly when `--store` names a file.
pub(super) fn check_store_dir(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => bail!(
            "--store {}: not a directory (give the store's directory; it is created if missing)",
            path.display()
        ),
        _ => Ok(()),
    }
}

pub(super) fn default_store() -> anyhow::Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("seamfs"));
    }
    let home = std::env::var_os("HOME")
        .context("neither XDG_DATA_HOME nor HOME is set: pass --store DIR")?;
    Ok(PathBuf::from(home).join(".local/share/seamfs"))
}

fn check_fuse_device() -> anyhow::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        bail!(
            "/dev/fuse is missing: load the FUSE module (modprobe fuse) or, in a container, \
             pass the device (docker run --device /dev/fuse --cap-add SYS_ADMIN)"
        );
    }
    Ok(())
}

/// The mount point must be an existing directory that nothing is mounted on, and empty unless
/// `nonempty` (a mount hides what the directory holds).
fn check_mountpoint(path: &Path, nonempty: bool) -> anyhow::Result<PathBuf> {
    // statfs always reaches a FUSE daemon (stat may be answered from the kernel's cache), so it
    // is what tells a stale mount.
    let metadata = std::fs::metadata(path);
    let stale = nix::sys::statvfs::statvfs(path).err() == Some(nix::errno::Errno::ENOTCONN)
        || metadata.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN);
    match metadata {
        _ if stale => bail!(
            "{} is a stale mount (its filesystem process is gone): run `fusermount3 -u {}` and retry",
            path.display(),
            path.display()
        ),
        // A missing mount point whose parent exists is created: `seamfs mount ~/mnt` just works.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(path).with_context(|| {
                format!("mount point {} does not exist and cannot be created (create it with `mkdir -p`)", path.display())
            })?;
            tracing::info!(mountpoint = %path.display(), "created the mount point");
        }
        Err(e) => bail!("cannot use {} as a mount point: {e}", path.display()),
        Ok(m) if !m.is_dir() => bail!("mount point {} is not a directory", path.display()),
        Ok(_) => {}
    }
    let path = path.canonicalize()?;
    if mount_id(&path).is_some() {
        bail!(
            "{} is busy: something is already mounted there (unmount it with `fusermount3 -u {}` or pick another directory)",
            path.display(),
            path.display()
        );
    }
    let has_entries = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some());
    if has_entries && !nonempty {
        bail!(
            "mount point {} is not empty: mounting would hide its files until unmounted (pick an empty directory, or pass --nonempty)",
            path.display()
        );
    }
    Ok(path)
}

/// The `major:minor` of the filesystem mounted exactly at `path`, from /proc/self/mountinfo
/// (read there because a stat of the mount point would wait on this very process).
pub(super) fn mount_id(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = path.to_str()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.len() > 4 && unescape_mountinfo(fields[4]) == wanted).then(|| fields[2].to_string())
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.by_ref().take(3).collect();
            if let Ok(code) = u8::from_str_radix(&digits, 8) {
                out.push(code as char);
                continue;
            }
            out.push(c);
            out.push_str(&digits);
        } else {
            out.push(c);
        }
    }
    out
}

/// Larger kernel read-ahead (1 MiB requests instead of 128 KiB); it can only be set after mount.
fn raise_readahead(mountpoint: &Path) {
    let Some(id) = mount_id(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{id}/read_ahead_kb");
    match std::fs::write(&knob, "1024") {
        Ok(()) => tracing::debug!(knob, "read-ahead raised to 1 MiB"),
        Err(e) => {
            tracing::debug!(knob, error = %e, "could not raise read-ahead (needs root); keeping the default")
        }
    }
}

/// Fork; the child detaches (new session, stdio to /dev/null, logs to `<store>/mount.log`) and
/// runs `serve`; the parent waits until the child reports the mount live, then exits.
fn daemonize(
    store: &Path,
    serve: impl FnOnce(&mut dyn FnMut(Result<String, String>)) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let (read_end, write_end) = nix::unistd::pipe()?;
    // SAFETY: no other thread exists yet (nothing has been spawned before this point).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(write_end);
            let mut report = String::new();
            File::from(read_end).read_to_string(&mut report)?;
            match report.strip_prefix("ok ") {
                Some(line) => {
                    println!(
                        "{line} (daemon pid {child}; logs in {})",
                        store.join("mount.log").display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None if report.is_empty() => bail!("the seamfs daemon exited before mounting"),
                None => bail!("{}", report.trim_start_matches("error: ")),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            nix::unistd::setsid()?;
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(store.join("mount.log"))?;
            init_logging(Some(log));
            detach_stdio()?;
            let mut pipe = Some(File::from(write_end));
            let mut ready = |result: Result<String, String>| {
                if let Some(mut pipe) = pipe.take() {
                    let message = match result {
                        Ok(line) => format!("ok {line}"),
                        Err(e) => format!("error: {e}"),
                    };
                    let _ = pipe.write_all(message.as_bytes());
                }
            };
            let code = serve(&mut ready);
            if let Err(e) = &code {
                tracing::error!("{e:#}");
            }
            code
        }
    }
}

fn detach_stdio() -> anyhow::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        nix::unistd::dup2(null.as_raw_fd(), fd)?;
    }
    Ok(())
}

fn init_logging(file: Option<File>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match file {
        Some(file) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init(),
        // No colour codes in logs that go to a file or a pipe.
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
