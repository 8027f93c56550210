//! Tree file content: reads that see unpublished writes, writing and truncating into the
//! inode's pending write (started from the published content: an overlay of it for a large
//! file), and publishing on close, flush, fsync or truncate (the buffer into the store, then the
//! tree row, in one transaction with the BufferInfo and the end of a pending claim). A large
//! file whose writes were not in order is kept unhashed at close instead and published when its
//! checksum is needed (`fs::kept`). Publishing holds the inode's `Unpublished` slot while it
//! commits: see the lock order in `fs::namespace`.

use bytes::Bytes;
use nix::errno::Errno;

use super::error::{FsResult, store_errno};
use super::handles::{Handle, TreeFileHandle};
use super::inodes::Sidecar;
use super::journal;
use super::kept;
use super::namespace::{Namespace, slice};
use super::tree::{self, NodeKind};
use crate::buffer::Buffer;
use crate::buffer_info::BufferInfo;
use crate::checksum::Checksum;
use crate::store::{StoreError, TierWrite};

/// Block size for copying a published buffer into a pending write.
const COPY_BLOCK: usize = 1 << 20;
/// How long `fsync` waits for its buffer to reach the push target.
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most a sidecar written by a user may hold (it is kept in RAM until checked): a
/// `.CHECKSUM` is one 64-digit line, an `.INDEX` a directory's listing. A write past this fails
/// with EFBIG at once, so no write to a virtual file can make the daemon allocate more.
fn claim_limit(sidecar: Sidecar) -> usize {
    match sidecar {
        Sidecar::Checksum => 4 << 10,
        Sidecar::Index => 16 << 20,
    }
}

impl Namespace {
    pub(super) fn read_tree_file(
        &self,
        file: &TreeFileHandle,
        offset: u64,
        size: u32,
    ) -> FsResult<Bytes> {
        if let Some(slot) = self.unpublished.existing(file.ino) {
            let slot = slot.lock().expect("slot lock");
            if let Some(pending) = slot.as_ref() {
                let len = pending.len().saturating_sub(offset).min(size as u64) as usize;
                let mut out = vec![0u8; len];
                let mut done = 0;
                while done < len {
                    let n = pending
                        .read_at(offset + done as u64, &mut out[done..])
                        .map_err(store_errno)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                out.truncate(done);
                return Ok(Bytes::from(out));
            }
        }
        let buffer = self.published_buffer(file)?;
        Ok(slice(buffer.bytes(), offset, size))
    }

    /// The file's published buffer, kept in the handle while the file does not change.
    fn published_buffer(&self, file: &TreeFileHandle) -> FsResult<Buffer> {
        let checksum = self.file_checksum(file.ino)?;
        let mut snapshot = file.snapshot.lock().expect("snapshot lock");
        if let Some(buffer) = snapshot.as_ref()
            && buffer.checksum() == checksum
        {
            return Ok(buffer.clone());
        }
        let buffer = self.load(checksum)?;
        *snapshot = Some(buffer.clone());
        Ok(buffer)
    }

    /// The checksum of a tree file's content; a kept file is hashed and published first.
    pub(super) fn file_checksum(&self, ino: u64) -> FsResult<Checksum> {
        if self.unpublished.is_kept(ino) {
            self.publish(ino)?;
        } else if let Some(slot) = self.unpublished.existing(ino) {
            // A kept file may be being hashed by the background hasher right now: no longer
            // marked kept, its tree row not yet new. That publish holds the slot until the row
            // is committed, so waiting for the slot waits for the new checksum.
            drop(slot.lock().expect("slot lock"));
        }
        self.published_checksum(ino)
    }

    /// The checksum of a tree file's published content (its tree row).
    fn published_checksum(&self, ino: u64) -> FsResult<Checksum> {
        let orphan = self.orphan(ino);
        match self
            .read_tree()
            .get(ino)
            .or(orphan.as_ref())
            .map(|n| &n.kind)
        {
            Some(NodeKind::File { checksum, .. }) => Ok(*checksum),
            Some(NodeKind::Dir(_)) => Err(Errno::EISDIR),
            _ => Err(Errno::ENOENT),
        }
    }

    /// A stored buffer; its absence from the store is an I/O error (the tree refers to it).
    pub(super) fn load(&self, checksum: Checksum) -> FsResult<Buffer> {
        if checksum == tree::empty_checksum() {
            return Ok(Buffer::with_checksum(Bytes::new(), checksum));
        }
        match self.tiers().get(&checksum).map_err(store_errno)? {
            Some(buffer) => Ok(Buffer::with_checksum(buffer.bytes().clone(), checksum)),
            None => {
                tracing::error!(%checksum, "a tree file refers to a buffer the store does not have");
                Err(Errno::EIO)
            }
        }
    }

    /// Write `data` at `offset`; returns the number of bytes written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::TreeFile(file) if file.writable => {
                let slot = self.unpublished.slot(file.ino);
                let mut slot = slot.lock().expect("slot lock");
                let pending = self.pending_for(file.ino, &mut slot)?;
                pending.write_at(offset, data).map_err(store_errno)?;
                self.unpublished.mark_changed(file.ino);
                self.tree.write().expect("tree lock").modified(file.ino);
                Ok(data.len() as u32)
            }
            Handle::Claim(claim) => {
                let limit = claim_limit(claim.sidecar);
                if offset.saturating_add(data.len() as u64) > limit as u64 {
                    tracing::error!(subject = %claim.subject, limit, "a sidecar written into the mount may hold at most {limit} bytes");
                    return Err(Errno::EFBIG);
                }
                let mut buf = claim.data.lock().expect("claim lock");
                let mut written = buf.clone();
                let end = offset as usize + data.len();
                if written.len() < end {
                    written.resize(end, 0);
                }
                written[offset as usize..end].copy_from_slice(data);
                self.refuse_wrong_claim_early(claim, &written)?;
                *buf = written;
                Ok(data.len() as u32)
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// The pending write of a tree file, started from its published content if needed.
    fn pending_for<'a>(
        &self,
        ino: u64,
        slot: &'a mut Option<Box<dyn TierWrite>>,
    ) -> FsResult<&'a mut Box<dyn TierWrite>> {
        if slot.is_none() {
            *slot = Some(self.begin_edit(ino)?);
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    /// A pending write holding the file's published content: for a large file an overlay of
    /// its stored file (nothing copied, see `TierWrite::overlay`), else a copy.
    fn begin_edit(&self, ino: u64) -> FsResult<Box<dyn TierWrite>> {
        self.edit_of(ino, self.published_checksum(ino)?)
    }

    /// A pending write for `ino` holding the stored buffer `checksum` (see `begin_edit`).
    pub(super) fn edit_of(&self, ino: u64, checksum: Checksum) -> FsResult<Box<dyn TierWrite>> {
        let mut pending = self.tiers().begin_write().map_err(store_errno)?;
        if checksum == tree::empty_checksum() {
            // A new file (`tar x`, `cp`): nothing to look up, open or copy.
            return Ok(pending);
        }
        if let Some((base, len)) = self.large_stored_file(&checksum) {
            pending.set_len(len).map_err(store_errno)?;
            if pending.overlay(base, len).map_err(store_errno)? {
                self.unpublished.set_base(ino, checksum);
                return Ok(pending);
            }
            pending.set_len(0).map_err(store_errno)?;
        }
        let published = self.load(checksum)?;
        for (i, block) in published.as_slice().chunks(COPY_BLOCK).enumerate() {
            pending
                .write_at((i * COPY_BLOCK) as u64, block)
                .map_err(store_errno)?;
        }
        Ok(pending)
    }

    /// The local file of a stored buffer of `kept::LAZY_MIN` bytes or more, and its length.
    fn large_stored_file(&self, checksum: &Checksum) -> Option<(std::fs::File, u64)> {
        let file = std::fs::File::open(self.tiers().local_path(checksum)?).ok()?;
        let len = file.metadata().ok()?.len();
        (len >= kept::LAZY_MIN).then_some((file, len))
    }

    pub(super) fn truncate(&self, ino: u64, size: u64, keep_open: bool) -> FsResult<()> {
        let slot = self.unpublished.slot(ino);
        {
            let mut slot = slot.lock().expect("slot lock");
            if slot.is_none() && size == 0 {
                // Truncating to nothing needs no copy of the old content.
                *slot = Some(self.tiers().begin_write().map_err(store_errno)?);
            }
            self.pending_for(ino, &mut slot)?
                .set_len(size)
                .map_err(store_errno)?;
            self.unpublished.mark_changed(ino);
            self.tree.write().expect("tree lock").modified(ino);
        }
        if keep_open {
            Ok(())
        } else {
            self.close_written(ino)
        }
    }

    /// Close of one file descriptor: publish the file's writes.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::TreeFile(file) if file.writable => {
                // Before committing: the release may come after the process's next request.
                file.closed
                    .store(true, std::sync::atomic::Ordering::Release);
                self.close_written(file.ino)?;
                // What the writer changed besides the content: a new file, its attributes.
                self.journal_closed()?;
                self.check_unwritten_claim(file.ino)
            }
            Handle::Claim(claim) => self.check_claim(claim),
            _ => Ok(()),
        }
    }

    /// A file closed without writes (`touch`, an empty file from `tar x`) is complete too: a
    /// pending claim about it is checked now (publishing checks it otherwise).
    fn check_unwritten_claim(&self, ino: u64) -> FsResult<()> {
        let Some(node) = self.read_tree().get(ino).cloned() else {
            return Ok(());
        };
        let Some(claimed) = self.claims.get(node.parent, &node.name) else {
            return Ok(());
        };
        let actual = self.file_checksum(ino)?;
        self.transaction(|c| self.claims.remove(c.conn(), node.parent, &node.name))?;
        if claimed == actual {
            return Ok(());
        }
        tracing::error!(
            file = %self.read_tree().path(ino), %claimed, %actual,
            "{}.CHECKSUM was written before {} and does not match its content", node.name, node.name
        );
        Err(Errno::EIO)
    }

    /// `fallocate` (mode 0): the file grows to `offset + length` if it is shorter; the other
    /// modes (punching holes, keeping the size) have no meaning for a buffer.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        let Handle::TreeFile(file) = &*handle else {
            return Err(Errno::EBADF);
        };
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        let size = self.getattr(file.ino)?.size;
        if end > size {
            self.truncate(file.ino, end, true)?;
        }
        Ok(())
    }

    /// `copy_file_range`: a whole published file copied onto an empty one takes its buffer, no
    /// bytes move (O(1)); any other range is copied through `read` and `write`.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        offset_in: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
    ) -> FsResult<u32> {
        let (source, target) = match (
            self.handles.get(fh_in).as_deref(),
            self.handles.get(fh_out).as_deref(),
        ) {
            (Some(Handle::TreeFile(s)), Some(Handle::TreeFile(t))) if t.writable => (s.ino, t.ino),
            _ => return Err(Errno::EOPNOTSUPP),
        };
        let whole = offset_in == 0
            && offset_out == 0
            && self.unpublished.changed_at(source).is_none()
            && self.getattr(target)?.size == 0
            && len >= self.getattr(source)?.size;
        if whole && source != target {
            return self.share_content(source, target);
        }
        let chunk = len.min(COPY_BLOCK as u64) as u32;
        let data = self.read(fh_in, offset_in, chunk)?;
        self.write(fh_out, offset_out, &data)
    }

    /// Give `target` the published content of `source` (see `copy_file_range`).
    fn share_content(&self, source: u64, target: u64) -> FsResult<u32> {
        let checksum = self.file_checksum(source)?;
        let size = self.getattr(source)?.size;
        let slot = self.unpublished.slot(target);
        let mut slot = slot.lock().expect("slot lock");
        let result = self.mutate(|tree, c| {
            let node = tree
                .get(target)
                .cloned()
                .ok_or(super::tree::TreeError::NotFound)?;
            let claimed = self.claims.get(node.parent, &node.name);
            if claimed.is_some_and(|claimed| claimed != checksum) {
                return Ok(false);
            }
            self.claims.remove(c.conn(), node.parent, &node.name)?;
            tree.set_content(c.conn(), target, checksum, size)?;
            Ok(true)
        })?;
        if !result {
            tracing::error!(file = %self.read_tree().path(target), actual = %checksum, "a copy does not match the claim made before it");
            return Err(Errno::EIO);
        }
        // The (empty) writes pending on the target are replaced by the shared content.
        *slot = None;
        self.unpublished.published(target);
        if let Some(kept) = self.unpublished.take_kept(target) {
            self.forget_kept(target, &kept);
        }
        Ok(size.min(u32::MAX as u64) as u32)
    }

    /// `fsync`: the file is published (a kept file hashed) and its buffer made durable (the
    /// caller then syncs the tree, `sync_tree`); with `--push`, durability includes the upload, so it also waits until
    /// the file's buffer is on the push target (EIO if that does not happen within
    /// `PUSH_WAIT`: the buffer stays queued).
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh)?;
        let ino = match &*self.handles.get(fh).ok_or(Errno::EBADF)? {
            Handle::TreeFile(file) => file.ino,
            _ => return Ok(()),
        };
        self.publish(ino)?;
        let checksum = match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::File { checksum, .. }) => *checksum,
            _ => return Ok(()),
        };
        self.sync_buffer(&checksum)?;
        let Some(queue) = self.store.push() else {
            return Ok(());
        };
        match queue.wait_pushed(&checksum, PUSH_WAIT) {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::error!(%checksum, "fsync: the buffer was not pushed in time (it stays queued)");
                Err(Errno::EIO)
            }
            Err(e) => Err(store_errno(e)),
        }
    }

    /// Make one published buffer durable: its file and directory when it is a local file (an
    /// fsync of the file, not of the whole filesystem), else every deferred buffer.
    fn sync_buffer(&self, checksum: &Checksum) -> FsResult<()> {
        let synced = match self.tiers().local_path(checksum) {
            Some(path) => std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .and_then(|()| {
                    let dir = path.parent().expect("buffer files live in a directory");
                    std::fs::File::open(dir).and_then(|d| d.sync_all())
                }),
            None => self.deferred.sync_now().map_err(std::io::Error::other),
        };
        synced.map_err(|e| {
            tracing::error!(%checksum, error = %e, "fsync: could not make the buffer durable");
            Errno::EIO
        })
    }

    /// The last reference to an open file is gone.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.remove(fh).ok_or(Errno::EBADF)?;
        if let Handle::Buffer(checksum, _) = &*handle {
            self.tiers().release(checksum);
        }
        let Handle::TreeFile(file) = &*handle else {
            return Ok(());
        };
        let exists = self.read_tree().get(file.ino).is_some();
        if !exists {
            // Removed while open: once nobody has it open, it and its writes go.
            if !self.handles.tree_file_open(file.ino) {
                self.discard_unpublished(file.ino);
                self.orphans.lock().expect("orphans lock").remove(&file.ino);
            }
            return Ok(());
        }
        let published = if file.writable {
            self.close_written(file.ino)
                .and_then(|()| self.journal_closed())
        } else {
            Ok(())
        };
        self.unpublished.drop_if_clean(file.ino);
        published
    }

    /// Publish a tree file's pending writes: the buffer is verified and renamed into the store,
    /// then the tree row is committed. Readers see the old content until then.
    pub fn publish(&self, ino: u64) -> FsResult<()> {
        let Some(slot) = self.unpublished.existing(ino) else {
            return Ok(());
        };
        let mut slot = slot.lock().expect("slot lock");
        let Some(pending) = slot.take() else {
            return Ok(());
        };
        self.unpublished.published(ino);
        let kept = self.unpublished.take_kept(ino);
        let size = pending.len();
        let started = std::time::Instant::now();
        // Garbage collection waits until the tree row naming the new buffer is committed.
        let _writing = self.store.writing();
        // Not fsynced here: the ledger row below makes a power loss before the next sync
        // repairable, and `fsync()` syncs at once (see `fs::deferred`).
        let checksum = match pending.commit_deferred(None) {
            Ok(checksum) => checksum,
            Err(e) => {
                tracing::error!(ino, error = %e, "could not publish a written file");
                // A kept file's close() succeeded long ago: it stays kept if it can.
                // Else its temp file is left for a person to look at (logged).
                if let Some(kept) = kept {
                    *slot = self.reopen_kept(ino, kept);
                    if slot.is_none() {
                        self.forget_row(ino);
                    } else if matches!(e, StoreError::Poisoned(_)) {
                        // A write into it failed after a close (a full disk: the kernel
                        // writes back cached pages late); its writer got the error. Readers
                        // see what the reopened file holds, and so does its checksum.
                        drop(slot);
                        drop(_writing);
                        return self.publish(ino);
                    }
                }
                // A full disk says so (a kept edit must copy in its base to be stored).
                return Err(Errno::from_raw(e.errno()));
            }
        };
        if kept.is_none()
            && let Some((parent, name)) = self.publish_journaled(ino, checksum, size)
        {
            drop(slot);
            drop(_writing);
            self.relink_sidecars(parent, &name);
            tracing::debug!(ino, %checksum, size, "published (journaled)");
            self.journaled();
            return Ok(());
        }
        // The tree row, the buffer's BufferInfo, the end of a pending claim on the file and of
        // its kept row are committed together. A file that does not match its claim keeps its
        // previous content.
        let info = BufferInfo::with_length(size as usize).to_map();
        let result = self.mutate(|tree, c| {
            if kept.is_some() {
                kept::forget(c.conn(), ino)?;
            }
            match tree.get(ino) {
                Some(node) => {
                    let (parent, name) = (node.parent, node.name.clone());
                    let claimed = self.claims.remove(c.conn(), parent, &name)?;
                    c.merge_buffer_info(&checksum, &info)?;
                    if claimed.is_none_or(|claimed| claimed == checksum) {
                        tree.set_content(c.conn(), ino, checksum, size)?;
                    }
                    let ledger = self.deferred.record(c.conn(), &checksum)?;
                    Ok(Some((parent, name, claimed, ledger)))
                }
                None => Ok(None),
            }
        });
        let result = match (result, kept) {
            (Err(e), Some(kept)) => {
                // The buffer is stored, the tree row not (a full disk): close() succeeded long
                // ago, so the file stays kept, now as an edit of that buffer. Whoever asked
                // for its checksum gets the error (ENOSPC on a full disk).
                tracing::error!(ino, %checksum, error = %e, "could not publish a kept file; it stays kept");
                *slot = self.keep_committed(ino, checksum, kept);
                Err(e)
            }
            (Ok(done), Some(kept)) => {
                // Committed: the kept file (linked into the store, see `PendingWrite::
                // commit_as`) goes now, before its name can be taken by the file's next edit.
                kept::remove_file(&kept.path);
                Ok(done)
            }
            (result, None) => result,
        };
        drop(slot);
        drop(_writing);
        let Some((parent, name, claimed, ledger)) = result? else {
            // A removed file still open keeps its content in memory for its handles.
            if let Some(node) = self.orphans.lock().expect("orphans lock").get_mut(&ino) {
                node.kind = NodeKind::File { checksum, size };
            }
            return Ok(());
        };
        self.deferred.recorded(ledger);
        self.relink_sidecars(parent, &name);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match claimed {
            Some(claimed) if claimed != checksum => {
                tracing::error!(
                    file = %self.read_tree().path(ino), %claimed, actual = %checksum,
                    "{name}.CHECKSUM was written before {name} and does not match its content; \
                     the file keeps its previous content"
                );
                Err(Errno::EIO)
            }
            _ => {
                tracing::debug!(path = %self.read_tree().path(ino), %checksum, size, elapsed_ms, "published");
                Ok(())
            }
        }
    }
}

impl Namespace {
    /// The usual publish at `close()`: the new content set in memory and journaled with the
    /// buffer and the rows the writer changed (see `fs::journal`), no transaction. None (and
    /// the caller commits) for a file removed meanwhile or with a pending claim, while a gc is
    /// collecting (it reads the committed references), or if the journal cannot take it.
    /// Returns the file's directory and name.
    fn publish_journaled(&self, ino: u64, checksum: Checksum, size: u64) -> Option<(u64, String)> {
        let mut tree = self.tree.write().expect("tree lock");
        let node = tree.get(ino)?;
        if self.collecting.load(std::sync::atomic::Ordering::Acquire) > 0
            || self.claims.get(node.parent, &node.name).is_some()
        {
            return None;
        }
        let place = (node.parent, node.name.clone());
        tree.set_content_unsaved(ino, checksum, size).ok()?;
        let rows = tree.take_unjournaled();
        let ledger = self.deferred.give_id();
        let published = journal::Published {
            checksum,
            size,
            ledger,
        };
        if let Err(e) = self.journal.append(rows, Some(published)) {
            // The rows stay unsaved: the caller's transaction commits them.
            tracing::warn!(error = %e, "could not journal a closed file; committing it");
            return None;
        }
        drop(tree);
        self.deferred.recorded(ledger);
        Some(place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::inodes;
    use crate::fs::test_support::{namespace, read_all, write_file};
    use crate::fs::tree::ROOT;

    #[test]
    fn write_publish_read_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let ino = write_file(&ns, ROOT, "hello.txt", b"hello\n");
        assert_eq!(read_all(&ns, ino), b"hello\n");
        let sidecar = ns.lookup(ROOT, "hello.txt.CHECKSUM").unwrap();
        assert_eq!(sidecar.size, 65);
        assert_eq!(
            read_all(&ns, sidecar.ino),
            b"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\n"
        );
        let buffer = ns
            .lookup(
                inodes::BY_CHECKSUM,
                "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            )
            .unwrap();
        assert_eq!(read_all(&ns, buffer.ino), b"hello\n");
        assert_eq!(
            ns.getxattr(ino, "user.seamless.checksum").unwrap(),
            Checksum::of(b"hello\n").hex().into_bytes()
        );
        assert_eq!(
            ns.lookup(inodes::BY_CHECKSUM, &Checksum::of(b"nope").hex()),
            Err(Errno::ENOENT)
        );
    }

    #[test]
    fn copy_file_range_of_a_whole_file_shares_its_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let data = vec![7u8; 3 << 20];
        let source = write_file(&ns, ROOT, "src", &data);
        let (target, out) = ns.create(ROOT, "dst", 0o644).unwrap();
        let input = ns.open(source, libc::O_RDONLY).unwrap();
        let copied = ns.copy_file_range(input.fh, 0, out.fh, 0, 1 << 30).unwrap();
        assert_eq!(copied as usize, data.len());
        assert!(
            ns.unpublished
                .existing(target.ino)
                .is_none_or(|s| s.lock().unwrap().is_none())
        );
        ns.release(out.fh).unwrap();
        assert_eq!(ns.file_checksum(target.ino), ns.file_checksum(source));
        // A part of a file is copied through read and write.
        let (part, out) = ns.create(ROOT, "part", 0o644).unwrap();
        assert_eq!(ns.copy_file_range(input.fh, 10, out.fh, 0, 5).unwrap(), 5);
        ns.release(out.fh).unwrap();
        ns.release(input.fh).unwrap();
        assert_eq!(read_all(&ns, part.ino), vec![7u8; 5]);
    }

    #[test]
    fn an_mtime_set_before_close_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let (attr, opened) = ns.create(ROOT, "f", 0o644).unwrap();
        ns.write(opened.fh, 0, b"abc").unwrap();
        let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        ns.setattr(attr.ino, None, None, Some(then), Some(opened.fh))
            .unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.getattr(attr.ino).unwrap().mtime, then);
        // A later write moves it again.
        let opened = ns.open(attr.ino, libc::O_WRONLY).unwrap();
        ns.write(opened.fh, 0, b"x").unwrap();
        ns.release(opened.fh).unwrap();
        assert!(ns.getattr(attr.ino).unwrap().mtime > then);
    }

    #[test]
    fn overwrite_in_the_middle_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        let ino = write_file(&ns, ROOT, "f", b"abcdefgh");
        let opened = ns.open(ino, libc::O_RDWR).unwrap();
        ns.write(opened.fh, 2, b"XY").unwrap();
        assert_eq!(ns.read(opened.fh, 0, 100).unwrap(), &b"abXYefgh"[..]);
        ns.setattr(ino, None, Some(5), None, Some(opened.fh))
            .unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(read_all(&ns, ino), b"abXYe");
        ns.setattr(ino, None, Some(0), None, None).unwrap();
        assert_eq!(ns.getattr(ino).unwrap().size, 0);
        assert_eq!(read_all(&ns, ino), b"");
    }
}
