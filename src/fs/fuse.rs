//! The thin `fuser` adapter: translates kernel requests into `Namespace` calls and replies.
//! Its own state is only what the kernel protocol needs: FUSE passthrough backing ids (one per
//! inode, shared by its open handles) and the kernel settings chosen at `init`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use fuser::{
    BackingId, Errno as FuseErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use nix::errno::Errno;

use super::inodes::FIXED_BASE;
use super::namespace::{Attr, CacheMode, Kind, Namespace, Opened};
use super::tree::{AttrChanges, NodeKind};
use super::tree_ops::Changer;

/// Largest FUSE request the kernel allows here (`max_pages_limit` 256 pages).
pub const MAX_REQUEST: u32 = 1 << 20;

/// The filesystem as fuser sees it.
pub struct SeamFs {
    ns: Arc<Namespace>,
    uid: u32,
    gid: u32,
    passthrough: AtomicBool,
    backing: Mutex<Backing>,
    /// The session's notifier, set once the session exists (`notifier_slot`).
    notifier: Arc<OnceLock<Notifier>>,
}

/// Passthrough backing ids by inode (the kernel requires one per inode), with the handles using them.
#[derive(Default)]
struct Backing {
    by_ino: HashMap<u64, (BackingId, usize)>,
    handles: HashMap<u64, u64>,
}

impl SeamFs {
    pub fn new(ns: Arc<Namespace>) -> Self {
        SeamFs {
            ns,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            passthrough: AtomicBool::new(false),
            backing: Mutex::default(),
            notifier: Arc::default(),
        }
    }

    /// Where the mount puts the session's notifier: with it, names of buffers that garbage
    /// collection removed are dropped from the kernel's cache at once.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// Tell the kernel to forget the names the namespace no longer serves.
    fn invalidate_removed(&self) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        for (parent, name) in self.ns.take_invalidations() {
            // ENOENT: the kernel did not have the name cached.
            let _ = notifier.inval_entry(INodeNo(parent), OsStr::new(&name));
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        let kind = file_type(a.kind);
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            // Only tree files hold data: buffers under by-checksum/ and as-*/ and the virtual
            // sidecars are other names for stored bytes, so `du` counts those once.
            blocks: if a.ino < FIXED_BASE && a.kind == Kind::File {
                a.size.div_ceil(512)
            } else {
                0
            },
            atime: a.atime.unwrap_or(a.mtime),
            mtime: a.mtime,
            ctime: a.ctime.unwrap_or(a.mtime),
            crtime: a.mtime,
            kind,
            perm: a.perm,
            nlink: a.nlink.unwrap_or(if a.kind == Kind::Dir { 2 } else { 1 }),
            uid: a.uid.unwrap_or(self.uid),
            gid: a.gid.unwrap_or(self.gid),
            rdev: a.rdev,
            // Large I/O blocks: cp and friends size their buffers from st_blksize.
            blksize: MAX_REQUEST,
            flags: 0,
        }
    }

    fn entry(&self, reply: ReplyEntry, result: Result<Attr, Errno>) {
        match result {
            Ok(a) => reply.entry_with_ttls(&a.ttl, &a.ttl, &self.attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flags(cache: CacheMode) -> FopenFlags {
        match cache {
            CacheMode::Keep => FopenFlags::FOPEN_KEEP_CACHE,
            CacheMode::Direct => FopenFlags::FOPEN_DIRECT_IO,
            CacheMode::Normal => FopenFlags::empty(),
            CacheMode::Streamed => FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_KEEP_CACHE,
        }
    }

    /// Reply to an open, through passthrough when the file has a backing file and the kernel
    /// accepts it; otherwise (unprivileged, old kernel) silently through the daemon.
    fn reply_open(&self, ino: u64, opened: Opened, open_flags: i32, reply: ReplyOpen) {
        let mut flags = Self::flags(opened.cache);
        if open_flags & libc::O_ACCMODE == libc::O_RDONLY {
            // Only a writer's close has work (publishing, checking a claim): spare readers the
            // FLUSH round trip on every close().
            flags |= FopenFlags::FOPEN_NOFLUSH;
        }
        if let Some(path) = opened
            .backing
            .as_deref()
            .filter(|_| self.passthrough.load(Ordering::Relaxed))
        {
            // The kernel refuses FOPEN_KEEP_CACHE with passthrough (it has no page cache of its own).
            let flags = flags - FopenFlags::FOPEN_KEEP_CACHE;
            let mut backing = self.backing.lock().expect("backing lock");
            if let Some((id, users)) = backing.by_ino.get_mut(&ino) {
                *users += 1;
                reply.opened_passthrough(FileHandle(opened.fh), flags, id);
                backing.handles.insert(opened.fh, ino);
                return;
            }
            match open_backing(path, |f| reply.open_backing(f)) {
                Ok(id) => {
                    reply.opened_passthrough(FileHandle(opened.fh), flags, &id);
                    backing.by_ino.insert(ino, (id, 1));
                    backing.handles.insert(opened.fh, ino);
                    return;
                }
                Err(e) => {
                    tracing::info!(error = %e, "FUSE passthrough unavailable; reads go through the daemon");
                    self.passthrough.store(false, Ordering::Relaxed);
                }
            }
        }
        reply.opened(FileHandle(opened.fh), flags);
    }

    fn drop_backing(&self, fh: u64) {
        let mut backing = self.backing.lock().expect("backing lock");
        if let Some(ino) = backing.handles.remove(&fh)
            && let Some((_, users)) = backing.by_ino.get_mut(&ino)
        {
            *users -= 1;
            if *users == 0 {
                backing.by_ino.remove(&ino);
            }
        }
    }
}

fn open_backing(
    path: &Path,
    register: impl FnOnce(&File) -> std::io::Result<BackingId>,
) -> std::io::Result<BackingId> {
    register(&File::open(path)?)
}

/// Who makes a request that drops privileges (see `Namespace::kill_privileges`).
fn changer(req: &Request, capable: bool) -> Changer {
    Changer {
        pid: req.pid(),
        gid: req.gid(),
        capable,
    }
}

/// The user and group a request comes from: the owner of what it creates.
fn owner(req: &Request) -> Option<(u32, u32)> {
    Some((req.uid(), req.gid()))
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn errno(e: Errno) -> FuseErrno {
    FuseErrno::from_i32(e as i32)
}

/// A name to create. Tree names are text (Seamless index keys are JSON strings): another name
/// cannot be made.
fn new_name(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL)
}

/// A name to find: one that is not text cannot exist.
fn existing_name(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::ENOENT)
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for SeamFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_REQUEST);
        let _ = config.set_max_readahead(MAX_REQUEST);
        let _ = config.set_max_background(256);
        // Files opened with FOPEN_DIRECT_IO can still be mapped (MAP_SHARED too).
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        // We drop set-ID bits and capabilities on write, truncate and chown ourselves
        // (`kill_privileges`): the kernel then stops asking for `security.capability` before
        // every write() (a round trip each), and for the attributes before every chown.
        let _ = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        let passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok();
        self.passthrough.store(passthrough, Ordering::Relaxed);
        tracing::info!(passthrough, "FUSE session initialised");
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(
            reply,
            existing_name(name).and_then(|n| self.ns.lookup_by(parent.0, n, req.pid())),
        );
    }

    /// Also serves BATCH_FORGET: fuser's default `batch_forget` calls this per inode (its
    /// `ForgetOne` type is not exported, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ns.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.ns.getattr(ino.0) {
            Ok(a) => reply.attr(&a.ttl, &self.attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
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
        let mut changes = AttrChanges {
            mode,
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        // A chown, or a truncation by a caller other than root (the kernel's FATTR_KILL_SUIDGID,
        // which fuser does not pass on, means "without CAP_FSETID").
        let by = changer(req, req.uid() == 0);
        let kill = uid.is_some() || gid.is_some() || (size.is_some() && !by.capable);
        let result = if kill {
            self.ns.kill_privileges(ino.0, &mut changes, &by)
        } else {
            Ok(())
        };
        match result.and_then(|()| {
            self.ns
                .set_attrs(ino.0, changes, size, fh.map(|f| f.0), Some(req.pid()))
        }) {
            Ok(a) => reply.attr(&a.ttl, &self.attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ns.readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = new_name(name).and_then(|n| {
            let dir = NodeKind::Dir(Default::default());
            let attr = self
                .ns
                .add_node(parent.0, n, dir, mode & !umask, owner(req))?;
            self.ns.made_dir(parent.0, n, req.pid());
            Ok(attr)
        });
        self.entry(reply, made);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            existing_name(name).and_then(|n| self.ns.unlink(parent.0, n)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            existing_name(name).and_then(|n| self.ns.rmdir(parent.0, n)),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.to_str().ok_or(Errno::EINVAL);
        self.entry(
            reply,
            new_name(link_name).and_then(|n| {
                let kind = NodeKind::Symlink(target?.to_string());
                self.ns.add_node(parent.0, n, kind, 0o777, owner(req))
            }),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry(
            reply,
            new_name(newname).and_then(|n| self.ns.link(ino.0, newparent.0, n)),
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !(umask & 0o7777);
        self.entry(
            reply,
            new_name(name).and_then(|n| self.ns.mknod(parent.0, n, mode, rdev.into(), owner(req))),
        );
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
        let result = existing_name(name)
            .and_then(|n| Ok((n, new_name(newname)?)))
            .and_then(|(n, nn)| self.ns.rename(parent.0, n, newparent.0, nn, flags.bits()));
        empty(reply, result);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.ns.open_by(ino.0, flags.0, Some(req.pid())) {
            Ok(opened) => self.reply_open(ino.0, opened, flags.0, reply),
            Err(e) => reply.error(errno(e)),
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
        match self.ns.read(fh.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let killed = if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            // The kernel sets the flag for callers without CAP_FSETID.
            self.ns
                .kill_privileges_on_write(ino.0, &changer(req, false))
        } else {
            Ok(false)
        };
        if killed == Ok(true)
            && let Some(notifier) = self.notifier.get()
        {
            // The kernel keeps the mode it had cached: only the attributes are dropped (a
            // negative offset), so no page lock is taken while the writer holds the inode.
            let _ = notifier.inval_inode(ino, -1, 0);
        }
        match killed.and_then(|_| self.ns.write(fh.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.ns.flush(fh.0));
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
        self.drop_backing(fh.0);
        empty(reply, self.ns.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.ns.fsync(fh.0).and_then(|()| self.ns.sync_tree()),
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.ns.listed_by(ino.0, req.pid());
        match self.ns.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
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
        let entries = match self.ns.readdir(fh.0, offset) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, e) in entries.iter().enumerate() {
            let kind = file_type(e.kind);
            if reply.add(INodeNo(e.ino), offset + i as u64 + 1, kind, &e.name) {
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
        self.ns.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.ns.sync());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.ns.statfs() {
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
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match name
            .to_str()
            .ok_or(Errno::ENODATA)
            .and_then(|n| self.ns.getxattr(ino.0, n))
        {
            Ok(value) => xattr_reply(reply, &value, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let result = new_name(name).and_then(|n| self.ns.setxattr(ino.0, n, value));
        empty(reply, result);
        self.invalidate_removed();
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            name.to_str()
                .ok_or(Errno::ENODATA)
                .and_then(|n| self.ns.removexattr(ino.0, n)),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.ns.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for n in names {
                    list.extend_from_slice(n.as_bytes());
                    list.push(0);
                }
                xattr_reply(reply, &list, size);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self
            .ns
            .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
        {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.ns.fallocate(fh.0, offset, length, mode));
    }

    /// No ioctls (Python asks for TCGETS on every open): say so without fuser's warning.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(FuseErrno::ENOTTY);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let created = new_name(name).and_then(|n| {
            let created =
                self.ns
                    .create_as(parent.0, n, mode & !umask, owner(req), Some(req.pid()))?;
            if flags & libc::O_EXCL != 0 {
                self.ns.created_exclusively(parent.0, n, req.pid());
            }
            Ok(created)
        });
        match created {
            Ok((a, opened)) => {
                let flags = Self::flags(opened.cache);
                reply.created(
                    &a.ttl,
                    &self.attr(&a),
                    Generation(0),
                    FileHandle(opened.fh),
                    flags,
                );
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(FuseErrno::ERANGE);
    } else {
        reply.data(value);
    }
}
