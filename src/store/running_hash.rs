//! The running SHA-256 of a pending write, kept while its writes arrive in order.
//!
//! The first `INLINE_LIMIT` bytes are hashed on the writer's thread (small files need no
//! thread). Past that, a hasher thread takes over: the writer only tells it, through a bounded
//! channel, how far the file is now written in order, and the hasher reads those bytes back
//! from the file (the page cache) and hashes them; a writer whose bytes are shared (`Bytes`, a
//! download's chunks) hands over the very bytes it wrote instead, which spares the read-back
//! (a copy of every byte). So hashing overlaps the transfer instead of adding to it, and memory
//! stays bounded: the hasher's one read block, plus at most `LAG_LIMIT` notices in flight (a
//! full channel makes the writer wait).
//! The hasher also starts the disk writeback of what it hashed, in `WRITEBACK_BLOCK` ranges, so
//! the commit's fsync finds little left to write (about 90 ms → 20 ms per GiB here).
//!
//! An out-of-order write, or a truncation below what was hashed, loses the running hash: the
//! caller then re-reads the file at commit. The hash is always of the bytes in the file.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::checksum::{Checksum, Hasher};

/// Bytes hashed on the writer's thread before a hasher thread is started.
const INLINE_LIMIT: u64 = 1 << 20;
/// How many written-up-to notices may wait for the hasher (writes are up to 1 MiB each).
const LAG_LIMIT: usize = 32;
/// Read-back block of the hasher thread.
const READ_BLOCK: usize = 1 << 20;
/// Writeback is started in ranges of this size (fewer, larger disk writes).
const WRITEBACK_BLOCK: u64 = 8 << 20;

pub(super) struct RunningHash {
    state: State,
}

enum State {
    /// Bytes `[0, end)` hashed on the writer's thread.
    Inline { hasher: Hasher, end: u64 },
    /// Bytes `[0, end)` are written in order; the hasher thread hashes them.
    Background {
        ends: SyncSender<Notice>,
        thread: JoinHandle<io::Result<Hasher>>,
        end: u64,
    },
    /// Writes stopped arriving in order.
    Lost,
}

/// What the hasher thread is told about the next bytes written in order.
enum Notice {
    /// The file is written up to here: read the new bytes back.
    WrittenUpTo(u64),
    /// These are the next bytes, as written.
    Bytes(bytes::Bytes),
}

impl RunningHash {
    pub(super) fn new() -> Self {
        RunningHash {
            state: State::Inline {
                hasher: Hasher::new(),
                end: 0,
            },
        }
    }

    /// A hash that is no longer kept (the file will be re-read).
    pub(super) fn lost() -> Self {
        RunningHash { state: State::Lost }
    }

    /// `data` was just written to `file` at `offset`.
    pub(super) fn wrote(&mut self, file: &File, offset: u64, data: &[u8]) {
        self.record(file, offset, data, None);
    }

    /// `data` was just written to `file` at `offset`; the hasher may keep these very bytes.
    pub(super) fn wrote_shared(&mut self, file: &File, offset: u64, data: &bytes::Bytes) {
        self.record(file, offset, data, Some(data));
    }

    fn record(&mut self, file: &File, offset: u64, data: &[u8], shared: Option<&bytes::Bytes>) {
        let new_end = offset + data.len() as u64;
        let notice = || match shared {
            Some(bytes) => Notice::Bytes(bytes.clone()),
            None => Notice::WrittenUpTo(new_end),
        };
        match &mut self.state {
            State::Inline { hasher, end } if offset == *end && new_end <= INLINE_LIMIT => {
                hasher.update(data);
                *end = new_end;
            }
            State::Inline { end, .. } if offset == *end => self.hand_over(file, new_end, notice()),
            State::Background { ends, end, .. } if offset == *end => {
                *end = new_end;
                // A hasher stopped by a read error hangs up; `finish` reports its error.
                let _ = ends.send(notice());
            }
            State::Lost => {}
            // An overwrite of hashed bytes or a gap: fall back to re-hashing at commit.
            _ => self.lose(),
        }
    }

    /// The file is about to be cut to `len` bytes (call before cutting: the hasher may still be
    /// reading bytes past `len`).
    pub(super) fn truncating(&mut self, len: u64) {
        let end = match &self.state {
            State::Inline { end, .. } | State::Background { end, .. } => *end,
            State::Lost => return,
        };
        if len < end {
            self.lose();
        }
    }

    /// Whether `finish(len)` will have the checksum without re-reading the file.
    pub(super) fn covers(&self, len: u64) -> bool {
        matches!(&self.state, State::Inline { end, .. } | State::Background { end, .. } if *end == len)
    }

    /// The checksum of the file's `len` bytes, if they were all hashed in order; `None` if the
    /// caller must re-read the file.
    pub(super) fn finish(self, len: u64) -> io::Result<Option<Checksum>> {
        match self.state {
            State::Inline { hasher, end } if end == len => Ok(Some(hasher.finish())),
            State::Background { ends, thread, end } if end == len => {
                drop(ends);
                let hasher = thread.join().expect("the hasher thread does not panic")?;
                Ok(Some(hasher.finish()))
            }
            _ => Ok(None),
        }
    }

    /// Move the hashing of the file from `[end, new_end)` (told by `first`) on to a hasher
    /// thread (inline if no second descriptor can be had).
    fn hand_over(&mut self, file: &File, new_end: u64, first: Notice) {
        let State::Inline { hasher, end } = std::mem::replace(&mut self.state, State::Lost) else {
            unreachable!("only an inline hash is handed over");
        };
        let (ends, receive) = sync_channel(LAG_LIMIT);
        let spawned = file.try_clone().and_then(|reader| {
            std::thread::Builder::new()
                .name("seamfs-hasher".into())
                .spawn(move || hash_back(reader, receive, hasher, end))
        });
        self.state = match spawned {
            Ok(thread) => {
                ends.send(first)
                    .expect("the hasher thread was just started");
                State::Background {
                    ends,
                    thread,
                    end: new_end,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no hasher thread: the checksum is computed when the write is committed");
                State::Lost
            }
        };
    }

    fn lose(&mut self) {
        if let State::Background { ends, thread, .. } =
            std::mem::replace(&mut self.state, State::Lost)
        {
            // Wait for it (at most LAG_LIMIT blocks), so it never reads a file being changed.
            drop(ends);
            let _ = thread.join();
        }
    }
}

/// The hasher thread: hash `file` from `start` on, notice by notice, until the writer hangs
/// up.
fn hash_back(
    file: File,
    notices: Receiver<Notice>,
    mut hasher: Hasher,
    start: u64,
) -> io::Result<Hasher> {
    let mut block = Vec::new();
    let (mut at, mut written_back) = (start, start);
    for notice in notices {
        match notice {
            Notice::Bytes(bytes) => {
                hasher.update(&bytes);
                at += bytes.len() as u64;
            }
            Notice::WrittenUpTo(end) => {
                block.resize(READ_BLOCK, 0);
                while at < end {
                    let want = (end - at).min(READ_BLOCK as u64) as usize;
                    file.read_exact_at(&mut block[..want], at)?;
                    hasher.update(&block[..want]);
                    at += want as u64;
                }
            }
        }
        if at - written_back >= WRITEBACK_BLOCK {
            start_writeback(&file, written_back, at - written_back);
            written_back = at;
        }
    }
    Ok(hasher)
}

/// Start writing the range to disk now (without waiting), so that the commit's fsync finds
/// little left to do.
fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: plain syscall on a valid, owned file descriptor.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
