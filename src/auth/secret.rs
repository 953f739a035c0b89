//! The HS256 secret and where it comes from: `auth.jwtSecret` (the UTF-8 bytes of the string),
//! `auth.jwtSecretFile` (the file's bytes exactly as they are), or `DATA_DIR/secret.key` (64 hex
//! characters the server writes on first start, mode 0600; read without trailing whitespace).
//!
//! Only `tidings serve` creates `secret.key`: a command that mints tokens for a server must use
//! that server's secret, and a new one would sign tokens nobody accepts. This file owns
//! reading and creating secrets; checking tokens with them is [`super::keys`].

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::AuthError;
use crate::config::AuthSettings;

/// File name of the generated secret inside the data directory.
pub const SECRET_FILE: &str = "secret.key";

/// Where the secret in use came from (for the start-up line; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `auth.jwtSecret` or `TIDINGS_JWT_SECRET`.
    Configured,
    /// `auth.jwtSecretFile`.
    File(PathBuf),
    /// `DATA_DIR/secret.key`, found.
    DataDir(PathBuf),
    /// `DATA_DIR/secret.key`, created now.
    Created(PathBuf),
    /// Given directly (tests, embedders).
    Given,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Configured => f.write_str("auth.jwtSecret"),
            SecretSource::File(path) => write!(f, "auth.jwtSecretFile {}", path.display()),
            SecretSource::DataDir(path) => write!(f, "{}", path.display()),
            SecretSource::Created(path) => write!(f, "{} (created)", path.display()),
            SecretSource::Given => f.write_str("given"),
        }
    }
}

/// Whether a missing `DATA_DIR/secret.key` may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// `tidings serve`: a fresh install makes its own secret.
    Create,
    /// Commands that mint tokens for a server: refuse, naming `--data-dir` and `--config`.
    Refuse,
}

/// The secret `settings` name, else the data directory's.
pub(crate) fn resolve_secret(
    settings: &AuthSettings,
    data_dir: &Path,
    missing: Missing,
) -> Result<(Vec<u8>, SecretSource), AuthError> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok((secret.as_bytes().to_vec(), SecretSource::Configured));
    }
    if let Some(path) = &settings.jwt_secret_file {
        let bytes = std::fs::read(path).map_err(|source| AuthError::Secret {
            path: path.clone(),
            source,
        })?;
        return Ok((bytes, SecretSource::File(path.clone())));
    }
    let path = data_dir.join(SECRET_FILE);
    match missing {
        Missing::Create => load_or_create_secret(data_dir),
        Missing::Refuse => match std::fs::read(&path) {
            Ok(bytes) => Ok((trim_newline(bytes), SecretSource::DataDir(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AuthError::NoSecret { path }),
            Err(source) => Err(AuthError::Secret { path, source }),
        },
    }
}

/// Reads `DATA_DIR/secret.key`, or creates it (64 random hex characters, mode 0600).
pub(crate) fn load_or_create_secret(data_dir: &Path) -> Result<(Vec<u8>, SecretSource), AuthError> {
    let path = data_dir.join(SECRET_FILE);
    let secret_error = |source| AuthError::Secret {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => return Ok((trim_newline(bytes), SecretSource::DataDir(path))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(secret_error(e)),
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir).map_err(secret_error)?;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| secret_error(std::io::Error::other(e.to_string())))?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    match create_private_file(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(secret_error)?;
            Ok((secret.into_bytes(), SecretSource::Created(path)))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)
            .map(|bytes| (trim_newline(bytes), SecretSource::DataDir(path.clone())))
            .map_err(secret_error),
        Err(e) => Err(secret_error(e)),
    }
}

fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// `secret.key` is text the server wrote; an editor may have added a newline since.
fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = load_or_create_secret(dir.path()).unwrap();
        assert!(matches!(source, SecretSource::Created(_)));
        let (second, source) = load_or_create_secret(dir.path()).unwrap();
        assert!(matches!(source, SecretSource::DataDir(_)));
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_secret_file_is_used_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hs256.key");
        std::fs::write(&path, b"a secret with a newline\n").unwrap();
        let settings = AuthSettings {
            jwt_secret_file: Some(path),
            ..AuthSettings::default()
        };
        let (bytes, _) = resolve_secret(&settings, dir.path(), Missing::Refuse).unwrap();
        assert_eq!(bytes, b"a secret with a newline\n");
    }

    #[test]
    fn minting_commands_never_create_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            resolve_secret(&AuthSettings::default(), dir.path(), Missing::Refuse).unwrap_err();
        assert!(matches!(error, AuthError::NoSecret { .. }), "{error:?}");
        assert!(!dir.path().join(SECRET_FILE).exists());
        let text = error.to_string();
        assert!(
            text.contains("--data-dir") && text.contains("--config"),
            "{text}"
        );
    }
}
