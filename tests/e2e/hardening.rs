//! Hardening: what is kept at rest is readable by Conduit's user alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every directory and file under `dir` with its permission bits.
fn modes(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        found.push((
            path.display().to_string(),
            metadata.is_dir(),
            metadata.permissions().mode() & 0o777,
        ));
        if metadata.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

/// The data directory is created by the test harness with the default mask (0755);
/// once Conduit has run on it, stored credentials included, it and everything in it
/// (sled's files, the master key, the admin token) are the owner's alone.
#[tokio::test]
async fn the_data_directory_is_private_to_its_owner() {
    let (conduit, _fake, token, connection) = crate::stripe::setup().await;
    assert_eq!(conduit.vend(&token, &connection).await.status, 200);

    let found = modes(&conduit.data_dir);
    assert!(
        found.iter().any(|(_, is_dir, _)| !is_dir),
        "no files in {found:?}"
    );
    for (path, is_dir, mode) in found {
        let expected = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{path} is {mode:o}");
    }
}
