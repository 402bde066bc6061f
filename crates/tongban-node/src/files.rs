//! Private files: how the node and the authority write what they keep. Every
//! file is written under a unique temporary name beside its destination, given
//! its mode before any content is visible, synced, renamed into place and the
//! directory synced, so that a reader sees the old content or the new, never a
//! part, and never a file readable by others on the way.
//!
//! The lowest layer of the crate: it knows nothing of nodes, stores or cases.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: into a temporary file of a unique name
/// beside it (made 0600 by tempfile, then given `mode` on Unix), flushed, renamed
/// over `path`, and the directory synced, so that `path` is always either the
/// old content or the new one, and never readable by others on the way.
/// Without `mode` the file stays 0600.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), std::io::Error> {
    use std::io::Write;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tongban-")
        .tempfile_in(&parent)?;
    tmp.write_all(bytes)?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&parent)
}

/// Like [`write_atomic`], but refuses (`AlreadyExists`) when `path` exists, and
/// never replaces it: for backups and exports, which must not overwrite
/// anything.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    use std::io::Write;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tongban-")
        .tempfile_in(&parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(&parent)
}

/// Flushes a directory's entries (a rename into it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), std::io::Error> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
