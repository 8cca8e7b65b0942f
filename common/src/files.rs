//! Writing files that hold credentials: owner-only (0600), replaced atomically, so a crash
//! never leaves a half-written key and no other user can ever read one.
//!
//! The temporary file is created by `tempfile` (O_EXCL, a random name, 0600): a file or
//! symlink another user planted at a predictable name can neither receive the secret nor
//! make it theirs.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to `path` with mode 0600 (via a temporary file and a rename).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, contents, 0o600)
}

/// Writes `contents` to `path` with `mode`, atomically.
pub fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (and parents) owner-only (0700). An existing `dir` must be a real directory
/// (not a symlink) owned by this user: a directory someone else prepared is refused.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            if !m.is_dir() {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory (a symlink or a file is not accepted for secrets)",
                    dir.display()
                )));
            }
            if m.uid() != current_uid() {
                return Err(std::io::Error::other(format!(
                    "{} belongs to another user (uid {})",
                    dir.display(),
                    m.uid()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// This process's user id, read from a file it owns (no `libc` needed).
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }

    #[test]
    fn a_planted_file_or_symlink_at_the_old_temporary_name_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.key");
        let elsewhere = dir.path().join("stolen");
        // What the old code would have opened: .ca.key.tmp.PID.
        let planted = dir
            .path()
            .join(format!(".ca.key.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        write_private(&p, b"secret").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert!(!elsewhere.exists(), "the secret followed a planted symlink");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
    }

    #[test]
    fn a_symlinked_private_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(create_private_dir(&link).is_err());
        create_private_dir(&dir.path().join("new/nested")).unwrap();
        let mode = std::fs::metadata(dir.path().join("new/nested"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
