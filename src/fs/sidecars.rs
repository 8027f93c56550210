//! Sidecars and claims: which virtual `X.CHECKSUM` / `D.INDEX` names exist, their content (the
//! `.INDEX` cached until the tree changes), and checking a written sidecar (a claim) against its
//! subject, whether written directly or renamed onto the sidecar name.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use nix::errno::Errno;

use super::attr::{Attr, CacheMode, Kind, Opened};
use super::claims::SidecarAttr;
use super::error::{FsResult, tree_errno};
use super::handles::{ClaimHandle, Handle, SetAttrs};
use super::index;
use super::inodes::{Dynamic, Sidecar};
use super::namespace::Namespace;
use super::tree::{NodeKind, ROOT};
use crate::checksum::Checksum;

/// Most sidecar names kept unseen, and most copier processes remembered (see `lookup_by`).
const FRESH_MAX: usize = 65536;
const COPIERS_MAX: usize = 1024;

/// Sidecar names not to be found once by the copier process that created their subject:
/// (directory, sidecar name) → (pid, when); and the copiers (processes that created a file with
/// `O_EXCL`).
#[derive(Default)]
pub struct FreshSidecars {
    names: std::collections::HashMap<(u64, String), (u32, std::time::Instant)>,
    copiers: std::collections::HashSet<u32>,
}

impl FreshSidecars {
    fn copier(&mut self, pid: u32) {
        if self.copiers.len() >= COPIERS_MAX {
            self.copiers.clear();
        }
        self.copiers.insert(pid);
    }

    /// Both possible sidecar names of `subject` (a file has no `.INDEX`, so that one is never
    /// looked up as a sidecar anyway).
    fn add(&mut self, dir: u64, subject: &str, pid: u32) {
        let now = std::time::Instant::now();
        if self.names.len() >= FRESH_MAX {
            // Entries a process never used: the older half goes.
            let mut ages: Vec<_> = self.names.values().map(|(_, when)| *when).collect();
            ages.sort();
            let cut = ages[FRESH_MAX / 2];
            self.names.retain(|_, (_, when)| *when > cut);
        }
        for sidecar in [Sidecar::Checksum, Sidecar::Index] {
            self.names
                .insert((dir, format!("{subject}{}", sidecar.suffix())), (pid, now));
        }
    }
}

impl Namespace {
    /// What a virtual name stands for: a sidecar of an existing subject, or a pending claim.
    pub(super) fn virtual_key(&self, parent: u64, name: &str) -> FsResult<Dynamic> {
        let (subject, sidecar) = Sidecar::split(name).ok_or(Errno::ENOENT)?;
        if self.is_unlinked(parent, name) {
            return Err(Errno::ENOENT);
        }
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

    /// `lookup` on behalf of process `pid`. Copy tools (`cp -a`, `tar x`) create every file
    /// with `O_EXCL`, a sidecar after its subject, and the kernel answers `O_EXCL` with EEXIST
    /// whenever the lookup finds the name: the daemon is not told that a lookup is for an
    /// exclusive create. So a process that creates files exclusively (a copier) does not find,
    /// once, the sidecars of what it just created: the file, the directories it made, and the
    /// directories above a file it created. Every other process finds them, and so does the
    /// copier afterwards or once it lists the directory.
    pub fn lookup_by(&self, parent: u64, name: &str, pid: u32) -> FsResult<Attr> {
        let fresh = {
            let mut fresh = self.fresh_sidecars.lock().expect("fresh sidecars lock");
            let key = (parent, name.to_string());
            match fresh.names.get(&key) {
                Some((by, _)) if *by == pid => fresh.names.remove(&key).is_some(),
                _ => false,
            }
        };
        if fresh && self.read_tree().lookup(parent, name).is_err() {
            return Err(Errno::ENOENT);
        }
        self.lookup(parent, name)
    }

    /// Process `pid` created file `name` in `parent` with `O_EXCL`: see `lookup_by`. A
    /// sidecar it created (a claim: `D.INDEX` of a directory not made yet) makes its subject's
    /// other sidecar visible (`D.CHECKSUM` shows the claimed checksum): the copier, which
    /// creates that one next with `O_EXCL` as well, does not find it either.
    pub fn created_exclusively(&self, parent: u64, name: &str, pid: u32) {
        let mut subjects = vec![(parent, name.to_string())];
        if let Some((subject, _)) = Sidecar::split(name) {
            subjects.push((parent, subject.to_string()));
        }
        {
            let tree = self.read_tree();
            let mut dir = parent;
            while let Some(node) = tree.get(dir).filter(|_| dir != ROOT) {
                subjects.push((node.parent, node.name.clone()));
                dir = node.parent;
            }
        }
        let mut fresh = self.fresh_sidecars.lock().expect("fresh sidecars lock");
        fresh.copier(pid);
        for (dir, subject) in subjects {
            fresh.add(dir, &subject, pid);
        }
    }

    /// Process `pid` made directory `name` in `parent`: see `lookup_by`.
    pub fn made_dir(&self, parent: u64, name: &str, pid: u32) {
        let mut fresh = self.fresh_sidecars.lock().expect("fresh sidecars lock");
        if fresh.copiers.contains(&pid) {
            fresh.add(parent, name, pid);
        }
    }

    /// Process `pid` lists directory `dir`: it sees the sidecars there from now on.
    pub fn listed_by(&self, dir: u64, pid: u32) {
        let mut fresh = self.fresh_sidecars.lock().expect("fresh sidecars lock");
        if !fresh.names.is_empty() {
            fresh
                .names
                .retain(|(d, _), (by, _)| *d != dir || *by != pid);
        }
    }

    /// Whether writing `name` in `parent` is a claim (and never a tree file): the name has a
    /// sidecar suffix, is not a tree entry, and its subject is missing or has that sidecar.
    pub(super) fn claim_target(&self, parent: u64, name: &str) -> Option<(String, Sidecar)> {
        let (subject, sidecar) = Sidecar::split(name)?;
        let tree = self.read_tree();
        if tree.lookup(parent, name).is_ok() {
            return None;
        }
        let subject_ino = tree.lookup(parent, subject);
        drop(tree);
        match subject_ino {
            Ok(ino) if !self.has_sidecar(ino, sidecar) => None,
            _ => Some((subject.to_string(), sidecar)),
        }
    }

    /// Files have a `.CHECKSUM`; directories (but not the root) have both sidecars.
    pub(super) fn has_sidecar(&self, ino: u64, sidecar: Sidecar) -> bool {
        match self.read_tree().get(ino).map(|n| &n.kind) {
            Some(NodeKind::File { .. }) => sidecar == Sidecar::Checksum,
            Some(NodeKind::Dir(_)) => ino != ROOT,
            _ => false,
        }
    }

    fn is_unlinked(&self, dir: u64, name: &str) -> bool {
        let unlinked = self.unlinked_sidecars.lock().expect("unlinked lock");
        !unlinked.is_empty() && unlinked.contains(&(dir, name.to_string()))
    }

    /// The sidecars of `subject` in `dir` are found again (written, or their subject changed).
    pub(super) fn relink_sidecars(&self, dir: u64, subject: &str) {
        let mut unlinked = self.unlinked_sidecars.lock().expect("unlinked lock");
        if !unlinked.is_empty() {
            for sidecar in [Sidecar::Checksum, Sidecar::Index] {
                unlinked.remove(&(dir, format!("{subject}{}", sidecar.suffix())));
            }
        }
    }

    pub(super) fn open_claim(&self, dir: u64, subject: String, sidecar: Sidecar) -> Opened {
        self.relink_sidecars(dir, &subject);
        let claim = ClaimHandle {
            dir,
            subject,
            sidecar,
            data: Mutex::default(),
            attrs: Mutex::default(),
        };
        let fh = self.handles.insert(Handle::Claim(claim));
        Opened {
            fh,
            cache: CacheMode::Direct,
            backing: None,
        }
    }

    /// A sidecar written by the user, at close: see `settle_claim`. Nothing written (`touch`,
    /// an open for writing that wrote nothing) claims nothing.
    pub(super) fn check_claim(&self, claim: &ClaimHandle) -> FsResult<()> {
        let data = claim.data.lock().expect("claim lock").clone();
        if data.is_empty() {
            return Ok(());
        }
        let claimed = claimed_checksum(&data, claim.sidecar, &claim.subject)?;
        let attrs = *claim.attrs.lock().expect("claim attrs lock");
        self.settle_claim(claim.dir, &claim.subject, claim.sidecar, claimed, attrs)
    }

    /// A complete `.CHECKSUM` written about a complete file that it does not match fails the
    /// write itself, not only the close: shells ignore errors of `close()` after a redirect
    /// (`echo … > F.CHECKSUM`), not those of `write()`.
    pub(super) fn refuse_wrong_claim_early(
        &self,
        claim: &ClaimHandle,
        data: &[u8],
    ) -> FsResult<()> {
        if claim.sidecar != Sidecar::Checksum {
            return Ok(());
        }
        let Ok(claimed) = Checksum::from_sidecar(data) else {
            return Ok(());
        };
        let subject = self.read_tree().lookup(claim.dir, &claim.subject).ok();
        let Some(subject) = subject.filter(|s| !self.has_sidecar(*s, Sidecar::Index)) else {
            return Ok(());
        };
        if self.handles.tree_file_writable(subject) {
            return Ok(());
        }
        // A kept file is complete too (closed, only not hashed yet): its checksum publishes it,
        // after which no write is pending unless another writer came meanwhile.
        let actual = self.file_checksum(subject);
        let complete = self
            .unpublished
            .existing(subject)
            .is_none_or(|slot| slot.lock().expect("slot lock").is_none());
        match actual {
            Ok(actual) if complete && actual != claimed => {
                tracing::error!(
                    subject = %self.read_tree().path(subject), written = %claimed, %actual,
                    "the written .CHECKSUM does not match the content; refused"
                );
                Err(Errno::EIO)
            }
            _ => Ok(()),
        }
    }

    /// A claim that `subject` in `dir` has checksum `claimed` (for a directory: the checksum of
    /// its `.INDEX`). Accepted if the subject matches; held (in `.seamfs/claims`) while the
    /// subject is missing, a file still open for writing, or a directory that does not match yet
    /// (it may still be filling: `tar x`, `rsync`); refused with EIO if the subject is a
    /// complete file with other content. `attrs` (mode, mtime set on the sidecar) are kept
    /// with the claimed checksum.
    fn settle_claim(
        &self,
        dir: u64,
        subject: &str,
        sidecar: Sidecar,
        claimed: Checksum,
        attrs: SetAttrs,
    ) -> FsResult<()> {
        let subject_ino = self.read_tree().lookup(dir, subject).ok();
        let actual = match subject_ino {
            Some(ino) if self.has_sidecar(ino, Sidecar::Index) => {
                Some(Checksum::of(&self.index_of(ino)?))
            }
            Some(ino) if !self.handles.tree_file_writable(ino) => {
                self.publish(ino)?;
                let actual = self.file_checksum(ino)?;
                if actual != claimed {
                    let path = self.read_tree().path(ino);
                    tracing::error!(
                        subject = %path, written = %claimed, actual = %actual,
                        "the written {} does not match the content; refused", sidecar.suffix()
                    );
                    return Err(Errno::EIO);
                }
                Some(actual)
            }
            Some(ino) => {
                // Held until the file being written is closed; a mismatch then keeps its
                // previous content. A kept file's is what an earlier close() acknowledged:
                // published now, so that it is not dropped with the new writes.
                if self.unpublished.is_kept(ino) {
                    self.publish(ino)?;
                }
                None
            }
            None => None,
        };
        let name = format!("{subject}{}", sidecar.suffix());
        let held = actual != Some(claimed);
        if held && let Some(actual) = actual {
            tracing::warn!(
                dir = %self.read_tree().path(dir), %name, written = %claimed, %actual,
                "directory claim does not match (yet); held in .seamfs/claims"
            );
        }
        let old = self.claims.attr(dir, &name, claimed);
        self.transaction(|c| {
            if held {
                self.claims.insert(c.conn(), dir, subject, claimed)?;
            } else {
                self.claims.remove(c.conn(), dir, subject)?;
            }
            if attrs != SetAttrs::default() {
                let attr = merged_attr(attrs, old, claimed);
                self.claims.set_attr(c.conn(), dir, &name, attr)?;
            }
            Ok(())
        })
    }

    /// A file renamed onto a sidecar name (`mv tmp F.CHECKSUM`, rsync, editors): a claim with
    /// the file's content, mode and mtime; the file is consumed unless the claim is refused.
    pub(super) fn claim_by_rename(
        &self,
        parent: u64,
        name: &str,
        dir: u64,
        subject: &str,
        sidecar: Sidecar,
    ) -> FsResult<()> {
        let source = self.read_tree().lookup(parent, name).map_err(tree_errno)?;
        self.publish(source)?;
        let content = self.load(self.file_checksum(source)?)?;
        self.relink_sidecars(dir, subject);
        let node = self.read_tree().get(source).cloned().ok_or(Errno::ENOENT)?;
        if !content.as_slice().is_empty() {
            let claimed = claimed_checksum(content.as_slice(), sidecar, subject)?;
            let attrs = SetAttrs {
                mode: Some(node.mode),
                mtime: Some(node.mtime),
            };
            self.settle_claim(dir, subject, sidecar, claimed, attrs)?;
        }
        self.mutate(|tree, c| tree.remove(c.conn(), parent, name, false))?;
        let key = match self.read_tree().lookup(dir, subject) {
            Ok(subject_ino) => Dynamic::Sidecar(subject_ino, sidecar),
            Err(_) => Dynamic::Claim(dir, subject.to_string()),
        };
        self.inodes.alias(source, key);
        Ok(())
    }

    /// Mode and mtime set on a virtual sidecar or claim (`touch`, `chmod`, `rsync -a`): kept
    /// for the content the sidecar has (or claims) now; through a claim's handle, when the claim
    /// is accepted.
    pub(super) fn set_sidecar_attrs(
        &self,
        key: &Dynamic,
        attrs: SetAttrs,
        fh: Option<u64>,
    ) -> FsResult<()> {
        // Through a claim being written (its handle, or the claim's inode while its handle is
        // open: `futimens` does not pass the handle): kept for when the claim is accepted.
        let handles = match (fh.and_then(|fh| self.handles.get(fh)), key) {
            (Some(handle), _) => vec![handle],
            (None, Dynamic::Claim(dir, subject)) if !self.claims.contains(*dir, subject) => {
                self.handles.claims_on(*dir, subject)
            }
            _ => Vec::new(),
        };
        let mut stashed = false;
        for handle in handles {
            if let Handle::Claim(claim) = &*handle {
                let mut set = claim.attrs.lock().expect("claim attrs lock");
                set.mode = attrs.mode.or(set.mode);
                set.mtime = attrs.mtime.or(set.mtime);
                stashed = true;
            }
        }
        if stashed {
            return Ok(());
        }
        let (dir, name, current) = match key {
            Dynamic::Sidecar(subject, sidecar) => {
                let node = self
                    .read_tree()
                    .get(*subject)
                    .cloned()
                    .ok_or(Errno::ENOENT)?;
                let current = self.sidecar_checksum(*subject, *sidecar)?;
                (
                    node.parent,
                    format!("{}{}", node.name, sidecar.suffix()),
                    current,
                )
            }
            Dynamic::Claim(dir, subject) => {
                let claimed = self.claims.get(*dir, subject).ok_or(Errno::ENOENT)?;
                (*dir, format!("{subject}.CHECKSUM"), claimed)
            }
            Dynamic::Buffer(_) => return Ok(()),
        };
        let old = self.claims.attr(dir, &name, current);
        let attr = merged_attr(attrs, old, current);
        self.transaction(|c| self.claims.set_attr(c.conn(), dir, &name, attr))
    }

    /// The attributes set on sidecar `sidecar` of `subject` for its current content, if any.
    pub(super) fn sidecar_attr(&self, subject: u64, sidecar: Sidecar) -> Option<SidecarAttr> {
        let node = self.read_tree().get(subject).cloned()?;
        let name = format!("{}{}", node.name, sidecar.suffix());
        // Checked first: a `stat` of a sidecar must not hash a kept file (nor hide the error
        // of hashing it from the read that follows).
        if !self.claims.has_attr(node.parent, &name) {
            return None;
        }
        let current = self.sidecar_checksum(subject, sidecar).ok()?;
        self.claims.attr(node.parent, &name, current)
    }

    /// What a sidecar says: the file's checksum, or the checksum of the directory's `.INDEX`.
    fn sidecar_checksum(&self, subject: u64, sidecar: Sidecar) -> FsResult<Checksum> {
        match sidecar {
            Sidecar::Checksum if !self.has_sidecar(subject, Sidecar::Index) => {
                self.file_checksum(subject)
            }
            _ => Ok(Checksum::of(&self.index_of(subject)?)),
        }
    }

    /// Remove the pending claim on the subject of sidecar name `name` (`rm X.CHECKSUM`).
    /// A virtual sidecar is not found after it is removed, until it is written again or its
    /// subject changes (`tar x` removes an existing file and creates it with `O_EXCL`); its
    /// content does not change. ENOENT if there is neither a claim nor a sidecar.
    pub(super) fn unlink_sidecar(&self, parent: u64, name: &str) -> FsResult<()> {
        if self.is_unlinked(parent, name) {
            return Err(Errno::ENOENT);
        }
        let (subject, _) = self.claim_target(parent, name).ok_or(Errno::ENOENT)?;
        let removed = self.transaction(|c| self.claims.remove(c.conn(), parent, &subject))?;
        let subject_exists = self.read_tree().lookup(parent, &subject).is_ok();
        if subject_exists {
            self.unlinked_sidecars
                .lock()
                .expect("unlinked lock")
                .insert((parent, name.to_string()));
        }
        if removed.is_some() || subject_exists {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// The files `seamless-checksum-index` sees under `dir`: the tree's files, and with
    /// `--list-sidecars` the listed sidecars too (it indexes them like any file), so that a copy
    /// out of the mount has a `D.INDEX` equal to the tool's for the copy.
    fn indexed_files(&self, dir: u64) -> FsResult<Vec<(String, Checksum)>> {
        if !self.options.list_sidecars {
            return self.read_tree().files_under(dir).map_err(tree_errno);
        }
        let mut out = Vec::new();
        self.collect_listed(dir, "", &mut out)?;
        Ok(out)
    }

    fn collect_listed(
        &self,
        dir: u64,
        prefix: &str,
        out: &mut Vec<(String, Checksum)>,
    ) -> FsResult<()> {
        for entry in self.tree_entries(dir)? {
            let path = format!("{prefix}{}", entry.name);
            match self.inodes.resolve(entry.ino) {
                Some(Dynamic::Sidecar(subject, sidecar)) => {
                    let content = self.sidecar_content(subject, sidecar)?;
                    out.push((path, Checksum::of(&content)));
                }
                _ if entry.kind == Kind::File => out.push((path, self.file_checksum(entry.ino)?)),
                _ if entry.kind == Kind::Dir => {
                    self.collect_listed(entry.ino, &format!("{path}/"), out)?
                }
                _ if entry.kind == Kind::Symlink => {
                    let tree = self.read_tree();
                    let target = match tree.get(entry.ino).map(|n| &n.kind) {
                        Some(NodeKind::Symlink(target)) => tree.linked_file(dir, target),
                        _ => None,
                    };
                    out.extend(target.map(|checksum| (path, checksum)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `.seamfs/claims`: one line per pending claim, `PATH.CHECKSUM<TAB>claimed checksum`.
    /// Directory claims that match by now are accepted first.
    pub(super) fn claims_text(&self) -> Vec<u8> {
        let mut out = String::new();
        for ((dir, subject), claimed) in self.claims.list() {
            let subject_ino = self.read_tree().lookup(dir, &subject).ok();
            if let Some(ino) = subject_ino.filter(|i| self.has_sidecar(*i, Sidecar::Index))
                && self
                    .index_of(ino)
                    .is_ok_and(|i| Checksum::of(&i) == claimed)
            {
                let _ = self.transaction(|c| self.claims.remove(c.conn(), dir, &subject));
                continue;
            }
            let dir_path = self.read_tree().path(dir);
            let sep = if dir_path.is_empty() { "" } else { "/" };
            out.push_str(&format!("{dir_path}{sep}{subject}.CHECKSUM\t{claimed}\n"));
        }
        out.into_bytes()
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
    pub(super) fn index_of(&self, dir: u64) -> FsResult<Bytes> {
        // The index names every file's checksum: kept files are hashed first.
        self.publish_kept()?;
        let version = self.version.load(Ordering::Acquire);
        if let Some((v, bytes)) = self.index_cache.lock().expect("index cache lock").get(&dir)
            && *v == version
        {
            return Ok(bytes.clone());
        }
        let files = self.indexed_files(dir)?;
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

/// What a sidecar's attributes become when a tool sets some of them: the rest as they were
/// (read-only and now, if never set).
fn merged_attr(set: SetAttrs, old: Option<SidecarAttr>, checksum: Checksum) -> SidecarAttr {
    SidecarAttr {
        mode: set.mode.or(old.map(|a| a.mode)).unwrap_or(0o444),
        mtime: set
            .mtime
            .or(old.map(|a| a.mtime))
            .unwrap_or_else(SystemTime::now),
        checksum,
    }
}

/// The length of a `.CHECKSUM`'s text: 64 hex digits and a newline.
pub(super) const CHECKSUM_SIDECAR_LEN: u64 = 65;

/// `hex + "\n"`, the Seamless `.CHECKSUM` format.
pub(super) fn sidecar_text(checksum: Checksum) -> Vec<u8> {
    format!("{checksum}\n").into_bytes()
}

/// The checksum a written sidecar claims: the text of a `.CHECKSUM`, the checksum of an `.INDEX`.
fn claimed_checksum(data: &[u8], sidecar: Sidecar, subject: &str) -> FsResult<Checksum> {
    match sidecar {
        Sidecar::Index => Ok(Checksum::of(data)),
        Sidecar::Checksum => Checksum::from_sidecar(data).map_err(|_| {
            tracing::error!(%subject, "a .CHECKSUM file must hold 64 hex digits; refused");
            Errno::EIO
        }),
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
        // A wrong claim fails the write itself (shells ignore errors of close).
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        let wrong = format!("{}\n", Checksum::of(b"y"));
        assert_eq!(ns.write(opened.fh, 0, wrong.as_bytes()), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
        // Written in pieces, it fails the close.
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, &wrong.as_bytes()[..10]).unwrap();
        ns.write(opened.fh, 10, &wrong.as_bytes()[10..])
            .unwrap_err();
        ns.release(opened.fh).unwrap();
        // A claim before its subject exists is checked when the subject is published.
        let (_, opened) = ns.create(ROOT, "g.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        ns.flush(opened.fh).unwrap();
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.lookup(ROOT, "g.CHECKSUM").unwrap().size, 65);
        let (g, opened) = ns.create(ROOT, "g", 0o644).unwrap();
        ns.write(opened.fh, 0, b"not x").unwrap();
        assert_eq!(ns.flush(opened.fh), Err(Errno::EIO));
        ns.release(opened.fh).unwrap();
        assert_eq!(
            read_all(&ns, g.ino),
            b"",
            "a refused file keeps its previous content"
        );
        // touch of a sidecar and re-writing an equal claim succeed.
        let sidecar = ns.lookup(ROOT, "f.CHECKSUM").unwrap().ino;
        let opened = ns.open(sidecar, libc::O_WRONLY).unwrap();
        assert_eq!(ns.flush(opened.fh), Ok(()));
        ns.release(opened.fh).unwrap();
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        assert_eq!(ns.flush(opened.fh), Ok(()));
        ns.release(opened.fh).unwrap();
        assert!(ns.claims_text().is_empty());
        // tar x over an existing sidecar: unlink, then create with O_EXCL.
        ns.unlink(ROOT, "f.CHECKSUM").unwrap();
        assert_eq!(ns.lookup(ROOT, "f.CHECKSUM"), Err(Errno::ENOENT));
        assert_eq!(ns.unlink(ROOT, "f.CHECKSUM"), Err(Errno::ENOENT));
        let (_, opened) = ns.create(ROOT, "f.CHECKSUM", 0o644).unwrap();
        ns.write(opened.fh, 0, good.as_bytes()).unwrap();
        assert_eq!(ns.flush(opened.fh), Ok(()));
        ns.release(opened.fh).unwrap();
        assert_eq!(ns.lookup(ROOT, "f.CHECKSUM").unwrap().size, 65);
    }

    #[test]
    fn directory_claims_are_held_until_the_directory_matches() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        // What the directory will be, built elsewhere.
        let model = ns.mkdir(ROOT, "model", 0o755).unwrap().ino;
        write_file(&ns, model, "a", b"x");
        let index = ns.index_of(model).unwrap();
        // tar x of an archive from a --list-sidecars mount: D.INDEX comes before D/.
        let (_, opened) = ns.create(ROOT, "d.INDEX", 0o644).unwrap();
        ns.write(opened.fh, 0, &index).unwrap();
        assert_eq!(ns.flush(opened.fh), Ok(()));
        ns.release(opened.fh).unwrap();
        assert_eq!(
            ns.lookup(ROOT, "d.INDEX"),
            Err(Errno::ENOENT),
            "never a real file"
        );
        let text = String::from_utf8(ns.claims_text()).unwrap();
        assert_eq!(text, format!("d.CHECKSUM\t{}\n", Checksum::of(&index)));
        let d = ns.mkdir(ROOT, "d", 0o755).unwrap().ino;
        // Renamed onto the sidecar while the directory is still empty (rsync): held, no error.
        let tmp = write_file(&ns, ROOT, ".d.INDEX.tmp", &index);
        ns.setattr(tmp, Some(0o640), None, None, None).unwrap();
        assert_eq!(ns.rename(ROOT, ".d.INDEX.tmp", ROOT, "d.INDEX", 0), Ok(()));
        assert_eq!(ns.lookup(ROOT, ".d.INDEX.tmp"), Err(Errno::ENOENT));
        assert!(!ns.claims_text().is_empty());
        write_file(&ns, d, "a", b"x");
        assert!(ns.claims_text().is_empty(), "the filled directory matches");
        assert_eq!(ns.lookup(ROOT, "d.INDEX").unwrap().perm, 0o640);
    }

    #[test]
    fn renames_onto_sidecars_and_claimed_names() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path());
        write_file(&ns, ROOT, "f", b"x");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_007);
        let tmp = write_file(&ns, ROOT, ".tmp", &sidecar_text(Checksum::of(b"x")));
        ns.setattr(tmp, None, None, Some(when), None).unwrap();
        assert_eq!(ns.rename(ROOT, ".tmp", ROOT, "f.CHECKSUM", 0), Ok(()));
        assert_eq!(ns.lookup(ROOT, "f.CHECKSUM").unwrap().mtime, when);
        write_file(&ns, ROOT, ".bad", &sidecar_text(Checksum::of(b"y")));
        assert_eq!(
            ns.rename(ROOT, ".bad", ROOT, "f.CHECKSUM", 0),
            Err(Errno::EIO)
        );
        assert!(
            ns.lookup(ROOT, ".bad").is_ok(),
            "a refused rename keeps its source"
        );
        // A claim, then the file arrives by rename (rsync's temp file).
        claim(&ns, ROOT, "g.CHECKSUM", b"g");
        write_file(&ns, ROOT, ".g.tmp", b"not g");
        assert_eq!(ns.rename(ROOT, ".g.tmp", ROOT, "g", 0), Err(Errno::EIO));
        assert_eq!(ns.lookup(ROOT, "g"), Err(Errno::ENOENT));
        ns.unlink(ROOT, ".g.tmp").unwrap();
        write_file(&ns, ROOT, ".g.tmp", b"g");
        assert_eq!(ns.rename(ROOT, ".g.tmp", ROOT, "g", 0), Ok(()));
        assert!(ns.claims_text().is_empty());
        // A pending claim can be removed.
        claim(&ns, ROOT, "h.CHECKSUM", b"h");
        ns.unlink(ROOT, "h.CHECKSUM").unwrap();
        assert!(ns.claims_text().is_empty());
        assert_eq!(ns.unlink(ROOT, "h.CHECKSUM"), Err(Errno::ENOENT));
        // Sidecar times survive a restart and end with a content change.
        let sidecar = ns.lookup(ROOT, "f.CHECKSUM").unwrap().ino;
        drop(ns);
        let ns = namespace(dir.path());
        assert_eq!(ns.getattr(sidecar).unwrap().mtime, when);
        let opened = ns
            .open(ns.lookup(ROOT, "f").unwrap().ino, libc::O_RDWR)
            .unwrap();
        ns.write(opened.fh, 0, b"new").unwrap();
        ns.release(opened.fh).unwrap();
        assert_ne!(ns.getattr(sidecar).unwrap().mtime, when);
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
