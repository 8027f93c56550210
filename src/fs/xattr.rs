//! Extended attributes: the checksum of a tree file or buffer, and its cell type where known.

use nix::errno::Errno;

use super::error::FsResult;
use super::inodes::Dynamic;
use super::namespace::Namespace;
use crate::celltype::CellType;
use crate::checksum::Checksum;

/// Extended attribute holding a file's checksum.
pub const CHECKSUM_XATTR: &str = "user.seamless.checksum";

/// Extended attribute holding the cell type a buffer is, once known.
pub const CELLTYPE_XATTR: &str = "user.seamless.celltype";

impl Namespace {
    /// `user.seamless.checksum` on files and buffers; `user.seamless.celltype` where known.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        let checksum = self.content_checksum(ino)?;
        match name {
            CHECKSUM_XATTR => Ok(checksum.hex().into_bytes()),
            CELLTYPE_XATTR => self
                .known_celltype(checksum)
                .map(|c| c.name().as_bytes().to_vec())
                .ok_or(Errno::ENODATA),
            _ => Err(Errno::ENODATA),
        }
    }

    /// Names of the extended attributes of `ino`.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<String>> {
        let Ok(checksum) = self.content_checksum(ino) else {
            return Ok(Vec::new());
        };
        let mut names = vec![CHECKSUM_XATTR.to_string()];
        if self.known_celltype(checksum).is_some() {
            names.push(CELLTYPE_XATTR.to_string());
        }
        Ok(names)
    }

    pub(super) fn known_celltype(&self, checksum: Checksum) -> Option<CellType> {
        self.views.known_celltype(&self.db, &checksum)
    }

    fn content_checksum(&self, ino: u64) -> FsResult<Checksum> {
        if self.is_tree(ino) {
            return self.file_checksum(ino).map_err(|_| Errno::ENODATA);
        }
        match self.inodes.resolve(ino) {
            Some(Dynamic::Buffer(checksum)) => Ok(checksum),
            _ => Err(Errno::ENODATA),
        }
    }
}
