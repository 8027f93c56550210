//! Tree file content: reads that see unpublished writes, writing and truncating into the
//! inode's pending write (started from the published content), and publishing on close, flush,
//! fsync or truncate (the buffer into the store, then the tree row, in one transaction with the
//! BufferInfo and the end of a pending claim). Publishing holds the inode's `Unpublished` slot
//! while it commits: see the lock order in `fs::namespace`.

use bytes::Bytes;
use nix::errno::Errno;

use super::error::{FsResult, store_errno};
use super::handles::{Handle, TreeFileHandle};
use super::namespace::{Namespace, slice};
use super::tree::{self, NodeKind};
use crate::buffer::Buffer;
use crate::buffer_info::BufferInfo;
use crate::checksum::Checksum;
use crate::store::TierWrite;

/// Block size for copying a published buffer into a pending write.
const COPY_BLOCK: usize = 1 << 20;
/// How long `fsync` waits for its buffer to reach the push target.
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

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

    pub(super) fn file_checksum(&self, ino: u64) -> FsResult<Checksum> {
        match self.read_tree().get(ino).map(|n| &n.kind) {
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
                Ok(data.len() as u32)
            }
            Handle::Claim(claim) => {
                let mut buf = claim.data.lock().expect("claim lock");
                let end = offset as usize + data.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
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
            let mut pending = self.tiers().begin_write().map_err(store_errno)?;
            let published = self.load(self.file_checksum(ino)?)?;
            for (i, block) in published.as_slice().chunks(COPY_BLOCK).enumerate() {
                pending
                    .write_at((i * COPY_BLOCK) as u64, block)
                    .map_err(store_errno)?;
            }
            *slot = Some(pending);
        }
        Ok(slot.as_mut().expect("just filled"))
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
        }
        if keep_open { Ok(()) } else { self.publish(ino) }
    }

    /// Close of one file descriptor: publish the file's writes.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh).ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::TreeFile(file) if file.writable => self.publish(file.ino),
            Handle::Claim(claim) => self.check_claim(claim),
            _ => Ok(()),
        }
    }

    /// `fsync`: publishing is what makes the content durable; with `--push`, so is the upload,
    /// so it also waits until the file's buffer is on the push target (EIO if that does not
    /// happen within `PUSH_WAIT`: the buffer stays queued).
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh)?;
        let Some(queue) = self.store.push() else {
            return Ok(());
        };
        let ino = match &*self.handles.get(fh).ok_or(Errno::EBADF)? {
            Handle::TreeFile(file) => file.ino,
            _ => return Ok(()),
        };
        let checksum = match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::File { checksum, .. }) => *checksum,
            _ => return Ok(()),
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
            // Unlinked while open: once nobody has it open, its writes go nowhere.
            if !self.handles.tree_file_open(file.ino) {
                self.unpublished.discard(file.ino);
            }
            return Ok(());
        }
        let published = if file.writable {
            self.publish(file.ino)
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
        let size = pending.len();
        let started = std::time::Instant::now();
        // Garbage collection waits until the tree row naming the new buffer is committed.
        let _writing = self.store.writing();
        let checksum = pending.commit(None).map_err(|e| {
            tracing::error!(ino, error = %e, "could not publish a written file");
            Errno::EIO
        })?;
        // The tree row, the buffer's BufferInfo and the end of a pending claim on the file are
        // committed together.
        let info = BufferInfo::with_length(size as usize).to_map();
        let result = self.mutate(|tree, c| match tree.get(ino) {
            Some(node) => {
                let name = node.name.clone();
                let claimed = self.claims.remove(c.conn(), node.parent, &name)?;
                tree.set_content(c.conn(), ino, checksum, size)?;
                c.merge_buffer_info(&checksum, &info)?;
                Ok(Some((name, claimed)))
            }
            None => Ok(None),
        });
        drop(slot);
        drop(_writing);
        let Some((name, claimed)) = result? else {
            return Ok(());
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(path = %self.read_tree().path(ino), %checksum, size, elapsed_ms, "published");
        match claimed {
            Some(claimed) if claimed != checksum => {
                tracing::error!(
                    file = %self.read_tree().path(ino), %claimed, actual = %checksum,
                    "{name}.CHECKSUM was written before {name} and does not match its content"
                );
                Err(Errno::EIO)
            }
            _ => Ok(()),
        }
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
