//! Sidecars and claims: which virtual `X.CHECKSUM` / `D.INDEX` names exist, their content (the
//! `.INDEX` cached until the tree changes), and checking a written sidecar (a claim) against its
//! subject, whether written directly or renamed onto the sidecar name.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use nix::errno::Errno;

use super::attr::{CacheMode, Opened};
use super::error::{FsResult, tree_errno};
use super::handles::{ClaimHandle, Handle};
use super::index;
use super::inodes::{Dynamic, Sidecar};
use super::namespace::Namespace;
use super::tree::{NodeKind, ROOT};
use crate::checksum::Checksum;

impl Namespace {
    /// What a virtual name stands for: a sidecar of an existing subject, or a pending claim.
    pub(super) fn virtual_key(&self, parent: u64, name: &str) -> FsResult<Dynamic> {
        let (subject, sidecar) = Sidecar::split(name).ok_or(Errno::ENOENT)?;
        let subject_ino = self.read_tree().lookup(parent, subject);
        if let Ok(subject_ino) = subject_ino
            && self.has_sidecar(subject_ino, sidecar)
        {
            return Ok(Dynamic::Sidecar(subject_ino, sidecar));
        }
        if sidecar == Sidecar::Checksum && self.claims.contains(parent, subject) {
            return Ok(Dynamic::Claim(parent, subject.to_string()));
        }
        Err(Errno::ENOENT)
    }

    /// Files have a `.CHECKSUM`; directories (but not the root) have both sidecars.
    pub(super) fn has_sidecar(&self, ino: u64, sidecar: Sidecar) -> bool {
        match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::File { .. }) => sidecar == Sidecar::Checksum,
            Some(NodeKind::Dir(_)) => ino != ROOT,
            _ => false,
        }
    }

    pub(super) fn open_claim(&self, dir: u64, subject: String, sidecar: Sidecar) -> Opened {
        let claim = ClaimHandle {
            dir,
            subject,
            sidecar,
            data: Mutex::default(),
        };
        let fh = self.handles.insert(Handle::Claim(claim));
        Opened {
            fh,
            cache: CacheMode::Direct,
            backing: None,
        }
    }

    /// A sidecar written by the user: accepted if it matches its subject, else EIO.
    pub(super) fn check_claim(&self, claim: &ClaimHandle) -> FsResult<()> {
        let data = claim.data.lock().expect("claim lock").clone();
        let subject = self.read_tree().lookup(claim.dir, &claim.subject);
        let Ok(subject) = subject else {
            let claimed = Checksum::from_sidecar(&data).map_err(|_| {
                tracing::error!(subject = %claim.subject, "a .CHECKSUM file must hold 64 hex digits");
                Errno::EIO
            })?;
            return self
                .db
                .transaction(|c| {
                    self.claims
                        .insert(c.conn(), claim.dir, &claim.subject, claimed)
                })
                .map_err(tree_errno);
        };
        self.publish(subject)?;
        let actual = self.sidecar_content(subject, claim.sidecar)?;
        let matches = match claim.sidecar {
            Sidecar::Checksum => {
                Checksum::from_sidecar(&data).ok() == Checksum::from_sidecar(&actual).ok()
            }
            Sidecar::Index => data == actual,
        };
        if matches {
            return Ok(());
        }
        let path = self.read_tree().path(subject);
        let written = match claim.sidecar {
            Sidecar::Checksum => String::from_utf8_lossy(&data).trim_end().to_string(),
            Sidecar::Index => Checksum::of(&data).hex(),
        };
        tracing::error!(
            subject = %path, written = %written, actual = %String::from_utf8_lossy(&sidecar_checksum_text(&actual, claim.sidecar)).trim_end(),
            "the written {} does not match the content; refused", claim.sidecar.suffix()
        );
        Err(Errno::EIO)
    }

    pub(super) fn claim_by_rename(&self, parent: u64, name: &str, target: Dynamic) -> FsResult<()> {
        let source = self.read_tree().lookup(parent, name).map_err(tree_errno)?;
        self.publish(source)?;
        let content = self.load(self.file_checksum(source)?)?;
        let (dir, subject, sidecar) = match target {
            Dynamic::Sidecar(subject, sidecar) => {
                let node = self
                    .read_tree()
                    .get(subject)
                    .cloned()
                    .ok_or(Errno::ENOENT)?;
                (node.parent, node.name, sidecar)
            }
            Dynamic::Claim(dir, subject) => (dir, subject, Sidecar::Checksum),
            Dynamic::Buffer(_) => return Err(Errno::EINVAL),
        };
        let claim = ClaimHandle {
            dir,
            subject,
            sidecar,
            data: Mutex::new(content.as_slice().to_vec()),
        };
        self.check_claim(&claim)?;
        self.mutate(|tree, c| tree.remove(c.conn(), parent, name, false))
            .map(|_| ())
    }

    /// The bytes of a virtual sidecar.
    pub(super) fn sidecar_content(&self, subject: u64, sidecar: Sidecar) -> FsResult<Bytes> {
        let is_dir = matches!(
            self.read_tree().get(subject).map(|n| &n.kind),
            Some(NodeKind::Dir(_))
        );
        match (sidecar, is_dir) {
            (Sidecar::Checksum, false) => {
                Ok(Bytes::from(sidecar_text(self.file_checksum(subject)?)))
            }
            (Sidecar::Checksum, true) => Ok(Bytes::from(sidecar_text(Checksum::of(
                &self.index_of(subject)?,
            )))),
            (Sidecar::Index, true) => self.index_of(subject),
            (Sidecar::Index, false) => Err(Errno::ENOENT),
        }
    }

    /// The `.INDEX` of a directory, cached until the tree changes.
    fn index_of(&self, dir: u64) -> FsResult<Bytes> {
        let version = self.version.load(Ordering::Acquire);
        if let Some((v, bytes)) = self.index_cache.lock().expect("index cache lock").get(&dir)
            && *v == version
        {
            return Ok(bytes.clone());
        }
        let files = self.read_tree().files_under(dir).map_err(tree_errno)?;
        let built = index::index_buffer(&files, |checksum, compression| {
            self.decompressed.get_or_compute(checksum, compression, || {
                let reader = self
                    .tiers()
                    .open_read(&checksum)
                    .map_err(std::io::Error::other)?;
                let reader = reader.ok_or_else(|| {
                    std::io::Error::other(format!("the store has no buffer {checksum}"))
                })?;
                index::decompressed_checksum(&reader, compression)
            })
        });
        let bytes = Bytes::from(built.map_err(|e| {
            tracing::error!(dir = %self.read_tree().path(dir), error = %e, "cannot build the .INDEX");
            Errno::EIO
        })?);
        self.index_cache
            .lock()
            .expect("index cache lock")
            .insert(dir, (version, bytes.clone()));
        Ok(bytes)
    }
}

/// `hex + "\n"`, the Seamless `.CHECKSUM` format.
pub(super) fn sidecar_text(checksum: Checksum) -> Vec<u8> {
    format!("{checksum}\n").into_bytes()
}

fn sidecar_checksum_text(content: &[u8], sidecar: Sidecar) -> Vec<u8> {
    match sidecar {
        Sidecar::Checksum => content.to_vec(),
        Sidecar::Index => sidecar_text(Checksum::of(content)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_support::{namespace, read_all, write_file};

    #[test]
    fn claims_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        write_file(&ns, ROOT, "f", b"x");
        let good = format!("{}\n", Checksum::of(b"x"));
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        assert_eq!(ns.flush(opened.fh), Ok(()));
        ns.release(opened.fh).unwrap();
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, format!("{}\n", Checksum::of(b"y")).as_bytes())
            .unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
        // A claim before its subject exists is checked when the subject is published.
        let (_, opened) = ns.create(ROOT, "g.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.lookup(ROOT, "g.CHECKSUM").unwrap().size, 65);
        let (_, opened) = ns.create(ROOT, "g", 0o644).unwrap();
        ns.write(opened.fh, 0, b"not x").unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
    }

    fn claim(ns: &Namespace, parent: u64, name: &str, content: &[u8]) {
        let (_, opened) = ns.create(parent, name, 0o644).unwrap();
        ns.write(opened.fh, 0, &sidecar_text(Checksum::of(content)))
            .unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
    }

    #[test]
    fn pending_claims_survive_reopen_and_leave_with_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = {
            let ns = namespace(dir.path());
            let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
            claim(&ns, ROOT, "g.CHECKSUM", b"x");
            claim(&ns, ROOT, "h.CHECKSUM", b"x");
            claim(&ns, d, "e.CHECKSUM", b"x");
            d
        };
        let ns = namespace(dir.path());
        assert_eq!(ns.lookup(ROOT, "g.CHECKSUM").unwrap().size, 65);
        assert_eq!(
            read_all(&ns, ns.lookup(ROOT, "g.CHECKSUM").unwrap().ino),
            sidecar_text(Checksum::of(b"x"))
        );
        // Still checked after the restart, and consumed by the check.
        let (_, opened) = ns.create(ROOT, "g", 0o644).unwrap();
        ns.write(opened.fh, 0, b"not x").unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
        write_file(&ns, ROOT, "h", b"x");
        ns.rmdir(ROOT, "d").unwrap();
        assert_eq!(ns.lookup(d, "e.CHECKSUM"), Err(Errno::ENOENT));
        drop(ns);
        let ns = namespace(dir.path());
        assert_eq!(
            ns.lookup(ROOT, "g.CHECKSUM").unwrap().size,
            65,
            "g's own sidecar"
        );
        assert!(ns.claims.get(ROOT, "g").is_none() && ns.claims.get(ROOT, "h").is_none());
        assert!(
            ns.claims.get(d, "e").is_none(),
            "claims of a removed directory are gone"
        );
    }
}
