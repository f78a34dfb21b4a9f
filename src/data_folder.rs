//! The data folder holds the signing keys, password hashes and sealed TOTP secrets, and
//! by default the credentials key file: nobody but the account Usher runs as should be
//! able to read it. [`prepare`] creates the folder private (0700) when it is missing,
//! and at start-up refuses a folder or key file that group or others can read, naming
//! the path and the `chmod` that fixes it. `store.sled.allow_open_permissions` turns the
//! refusal into a warning for setups that protect the folder some other way.

use std::path::{Path, PathBuf};

/// Why the data folder cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum DataFolderError {
    #[error("cannot create the data folder {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the permissions of {}: {source}", path.display())]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} can be read by other users (mode {mode:o}); it holds signing keys and password hashes. Fix it with `chmod {fix} {}`, or set store.sled.allow_open_permissions: true to start anyway",
        path.display(),
        path.display()
    )]
    Open {
        path: PathBuf,
        mode: u32,
        fix: &'static str,
    },
}

/// Create `folder` readable by its owner only when it does not exist, then check it
/// and `key_file` (when that exists). With `allow_open`, exposure is logged, not fatal.
pub fn prepare(
    folder: &Path,
    key_file: Option<&Path>,
    allow_open: bool,
) -> Result<(), DataFolderError> {
    if !folder.exists() {
        create_private(folder).map_err(|source| DataFolderError::Create {
            path: folder.to_path_buf(),
            source,
        })?;
    }
    let mut checks = vec![(folder, "700")];
    if let Some(file) = key_file.filter(|f| f.exists()) {
        checks.push((file, "600"));
    }
    for (path, fix) in checks {
        match exposure(path, fix) {
            Ok(()) => {}
            Err(e @ DataFolderError::Open { .. }) if allow_open => {
                tracing::warn!("{e} (starting because allow_open_permissions is set)");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `mkdir -p` with mode 0700 for every folder it creates, so no moment exists in which
/// the store folder is readable by others.
pub fn create_private(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(folder)
}

/// Create `folder` private, or make an existing one private. For tools that own the
/// folder they are given (`usher demo --data`); `usher serve` never changes an
/// operator's permissions, it refuses them.
pub fn make_private(folder: &Path) -> std::io::Result<()> {
    create_private(folder)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `Err(Open)` when group or others have any access to `path`.
#[cfg(unix)]
fn exposure(path: &Path, fix: &'static str) -> Result<(), DataFolderError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| DataFolderError::Inspect {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DataFolderError::Open {
            path: path.to_path_buf(),
            mode,
            fix,
        });
    }
    Ok(())
}

/// Other systems have no mode bits to check.
#[cfg(not(unix))]
fn exposure(_path: &Path, _fix: &'static str) -> Result<(), DataFolderError> {
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
    fn a_missing_folder_is_created_for_its_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested").join("data");
        prepare(&data, None, false).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("nested")), 0o700);
    }

    #[test]
    fn a_readable_key_file_is_refused_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = dir.path().join("credentials.key");
        std::fs::write(&key, [1u8; 32]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = prepare(dir.path(), Some(&key), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("chmod 600 {}", key.display())), "{e}");
        prepare(dir.path(), Some(&key), true).unwrap();
    }
}
