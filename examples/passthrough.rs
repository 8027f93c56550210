//! A minimal passthrough filesystem: mirrors a directory through FUSE with the session settings
//! seamfs uses (two worker threads with cloned device descriptors, 1 MiB `max_write` and
//! read-ahead, 256 background requests, the tree's 10 s entry/attribute TTL, kept page cache for
//! read-only opens, reads and writes through the daemon), and nothing it does not need (no
//! FLUSH on close). It is the FUSE ceiling in
//! `scripts/bench-files.sh`: what a daemon that does nothing but forward costs on this machine.
//!
//! Usage: `cargo run --release --example passthrough -- SOURCE_DIR MOUNTPOINT`
//! (runs in the foreground until `fusermount3 -u MOUNTPOINT`).
//!
//! Inodes are numbered per path for the life of the session (never forgotten: fine for a
//! benchmark); hard links and special files are not supported.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    Session, TimeOrNow, WriteFlags,
};

/// seamfs's tree TTL (`fs::attr::TREE_TTL`).
const TTL: Duration = Duration::from_secs(10);
/// seamfs's largest request (`fs::fuse::MAX_REQUEST`).
const MAX_REQUEST: u32 = 1 << 20;
/// Writes reach the source file at once, so a `close()` has nothing to flush: no FLUSH request.
const NO_FLUSH: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// Paths (relative to the source directory) by inode number and back.
struct Inodes {
    paths: HashMap<u64, PathBuf>,
    numbers: HashMap<PathBuf, u64>,
    next: u64,
}

impl Inodes {
    fn number(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.numbers.get(path) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.paths.insert(ino, path.to_path_buf());
        self.numbers.insert(path.to_path_buf(), ino);
        ino
    }

    fn remove(&mut self, path: &Path) {
        if let Some(ino) = self.numbers.remove(path) {
            self.paths.remove(&ino);
        }
    }

    /// `from` (and everything under it) is now called `to`.
    fn rename(&mut self, from: &Path, to: &Path) {
        self.remove(to);
        let moved: Vec<(PathBuf, u64)> = self
            .numbers
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let new = to.join(old.strip_prefix(from).expect("prefix"));
            self.numbers.remove(&old);
            self.numbers.insert(new.clone(), ino);
            self.paths.insert(ino, new);
        }
    }
}

enum Handle {
    File(File),
    Dir(Vec<(u64, FileType, std::ffi::OsString)>),
}

struct Passthrough {
    source: PathBuf,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
}

type Result<T> = std::result::Result<T, Errno>;

impl Passthrough {
    fn new(source: PathBuf) -> Self {
        let mut paths = HashMap::new();
        let mut numbers = HashMap::new();
        paths.insert(1, PathBuf::new());
        numbers.insert(PathBuf::new(), 1);
        Passthrough {
            source,
            inodes: Mutex::new(Inodes {
                paths,
                numbers,
                next: 2,
            }),
            handles: Mutex::default(),
            next_fh: AtomicU64::new(1),
        }
    }

    fn relative(&self, ino: INodeNo) -> Result<PathBuf> {
        let inodes = self.inodes.lock().unwrap();
        inodes.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf> {
        Ok(self.relative(parent)?.join(name))
    }

    fn real(&self, relative: &Path) -> PathBuf {
        self.source.join(relative)
    }

    fn attr(&self, relative: &Path) -> Result<FileAttr> {
        let meta = fs::symlink_metadata(self.real(relative))?;
        let ino = self.inodes.lock().unwrap().number(relative);
        Ok(file_attr(ino, &meta))
    }

    fn entry(&self, relative: &Path, reply: ReplyEntry) {
        match self.attr(relative) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap().insert(fh, Arc::new(handle));
        fh
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>> {
        let handles = self.handles.lock().unwrap();
        handles.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<Handle>> {
        let handle = self.handle(fh)?;
        match &*handle {
            Handle::File(_) => Ok(handle),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr> {
        let relative = self.relative(ino)?;
        let path = self.real(&relative);
        if let Some(mode) = mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if let Some(size) = size {
            match fh.map(|fh| self.file(fh)).transpose()? {
                Some(handle) => as_file(&handle).set_len(size)?,
                None => OpenOptions::new().write(true).open(&path)?.set_len(size)?,
            }
        }
        if atime.is_some() || mtime.is_some() {
            let spec = |t: Option<TimeOrNow>| match t {
                None => nix::sys::time::TimeSpec::UTIME_OMIT,
                Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::UTIME_NOW,
                Some(TimeOrNow::SpecificTime(t)) => {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    nix::sys::time::TimeSpec::from_duration(d)
                }
            };
            nix::sys::stat::utimensat(
                None,
                &path,
                &spec(atime),
                &spec(mtime),
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| Errno::from_i32(e as i32))?;
        }
        self.attr(&relative)
    }

    /// Remove `parent/name` with `remove` (`fs::remove_file` or `fs::remove_dir`).
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(&Path) -> io::Result<()>,
    ) -> Result<()> {
        let path = self.child(parent, name)?;
        remove(&self.real(&path))?;
        self.inodes.lock().unwrap().remove(&path);
        Ok(())
    }

    fn list(&self, ino: INodeNo) -> Result<Handle> {
        let relative = self.relative(ino)?;
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for entry in fs::read_dir(self.real(&relative))? {
            let entry = entry?;
            let kind = file_type(entry.file_type()?);
            let ino = self
                .inodes
                .lock()
                .unwrap()
                .number(&relative.join(entry.file_name()));
            entries.push((ino, kind, entry.file_name()));
        }
        Ok(Handle::Dir(entries))
    }
}

fn as_file(handle: &Handle) -> &File {
    match handle {
        Handle::File(file) => file,
        Handle::Dir(_) => unreachable!("checked by Passthrough::file"),
    }
}

fn file_type(t: fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

fn file_attr(ino: u64, meta: &fs::Metadata) -> FileAttr {
    let time = |s: i64, ns: i64| UNIX_EPOCH + Duration::new(s.max(0) as u64, ns as u32);
    FileAttr {
        ino: INodeNo(ino),
        size: meta.len(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.mtime(), meta.mtime_nsec()),
        kind: file_type(meta.file_type()),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: MAX_REQUEST,
        flags: 0,
    }
}

/// `OpenOptions` for the `open(2)` flags the kernel forwards (it strips O_CREAT, O_EXCL and,
/// without atomic_o_trunc, O_TRUNC).
fn options(flags: i32) -> OpenOptions {
    let mut options = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => options.read(true),
        libc::O_WRONLY => options.write(true),
        _ => options.read(true).write(true),
    };
    options
        .custom_flags(flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY));
    options
}

fn reply_empty(reply: ReplyEmpty, result: Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Passthrough {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config.set_max_write(MAX_REQUEST);
        let _ = config.set_max_readahead(MAX_REQUEST);
        let _ = config.set_max_background(256);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name) {
            Ok(path) => self.entry(&path, reply),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.relative(ino).and_then(|p| self.attr(&p)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.setattr(ino, mode, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.child(parent, name).and_then(|path| {
            fs::DirBuilder::new()
                .mode(mode & !umask)
                .create(self.real(&path))?;
            Ok(path)
        });
        match made {
            Ok(path) => self.entry(&path, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove(parent, name, |p| fs::remove_file(p)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove(parent, name, |p| fs::remove_dir(p)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.bits() != 0 {
            return reply.error(Errno::EINVAL);
        }
        let result = (|| {
            let from = self.child(parent, name)?;
            let to = self.child(newparent, newname)?;
            // Under the inode lock, so a concurrent lookup cannot number a half-moved path.
            let mut inodes = self.inodes.lock().unwrap();
            fs::rename(self.real(&from), self.real(&to))?;
            inodes.rename(&from, &to);
            Ok(())
        })();
        reply_empty(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let opened = self
            .relative(ino)
            .and_then(|path| Ok(options(flags.0).open(self.real(&path))?));
        match opened {
            Ok(file) => {
                let cache = if flags.0 & libc::O_ACCMODE == libc::O_RDONLY {
                    FopenFlags::FOPEN_KEEP_CACHE | NO_FLUSH
                } else {
                    NO_FLUSH
                };
                reply.opened(FileHandle(self.insert(Handle::File(file))), cache);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = self.file(fh).and_then(|handle| {
            let mut buf = vec![0; size as usize];
            let n = as_file(&handle).read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        });
        match data {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = self.file(fh).and_then(|handle| {
            as_file(&handle).write_all_at(data, offset)?;
            Ok(data.len() as u32)
        });
        match written {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.file(fh).and_then(|handle| {
                let file = as_file(&handle);
                if datasync {
                    file.sync_data()?;
                } else {
                    file.sync_all()?;
                }
                Ok(())
            }),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.list(ino) {
            Ok(listing) => reply.opened(FileHandle(self.insert(listing)), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(e) => return reply.error(e),
        };
        let Handle::Dir(entries) = &*handle else {
            return reply.error(Errno::ENOTDIR);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(&self.source) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let created = self.child(parent, name).and_then(|path| {
            let mut options = options(flags);
            options.write(true).create(true).mode(mode & !umask);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            }
            let file = options.open(self.real(&path))?;
            Ok((self.attr(&path)?, file))
        });
        match created {
            Ok((attr, file)) => {
                let fh = self.insert(Handle::File(file));
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(e),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [source, mountpoint] = args.as_slice() else {
        anyhow::bail!("usage: passthrough SOURCE_DIR MOUNTPOINT");
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("passthrough".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    config.n_threads = Some(2);
    config.clone_fd = true;
    let fs = Passthrough::new(source.canonicalize()?);
    Session::new(fs, mountpoint, &config)?.run()?;
    Ok(())
}
