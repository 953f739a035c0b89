//! Files only their owner may read: the data directory holds message text and the token
//! secret, so the log's engine and the store's database are made 0700 (directories) and 0600
//! (files) when they are opened. This module only sets modes; it creates nothing.

use std::path::Path;

/// 0600 on every file and 0700 on every directory under `root` (`root` included).
#[cfg(unix)]
pub(crate) fn restrict_tree(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Modes are a Unix matter; elsewhere the directory's own permissions apply.
#[cfg(not(unix))]
pub(crate) fn restrict_tree(_root: &Path) -> std::io::Result<()> {
    Ok(())
}
