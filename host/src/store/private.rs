//! The data directory belongs to the process's user alone: it holds sealed credentials,
//! the sealed keyring, stored results and compiled native code. [`keep_private`] makes
//! every file this process creates from now on `0600` and every directory `0700` (the
//! process's file-mode mask, which covers the files sled and the compile cache create
//! as they go), creates the directory `0700`, and tightens what an earlier version or
//! an operator left readable inside it.

use std::io;
use std::path::Path;

/// Creates `dir` (`0700`), sets the process's mask to `077`, and removes group and
/// other permissions from everything under `dir`. Symbolic links are not followed.
pub fn keep_private(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        tighten(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Clears the group and other bits of `path` and, for a directory, of what is in it.
#[cfg(unix)]
fn tighten(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700))?;
    }
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_was_left_readable_is_tightened_and_new_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("db/conf"), b"x").unwrap();
        std::fs::set_permissions(dir.join("db/conf"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        keep_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("db")), 0o700);
        assert_eq!(mode(&dir.join("db/conf")), 0o600);
        std::fs::write(dir.join("new"), b"y").unwrap();
        assert_eq!(mode(&dir.join("new")), 0o600);
    }
}
