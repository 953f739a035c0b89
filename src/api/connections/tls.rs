//! TLS on the listener: the certificate chain and key of `[tls]`, loaded at start, checked for
//! changes every [`RELOAD_CHECK_INTERVAL`] and reloaded without a restart (a renewed certificate
//! is served to the next connection; open ones keep theirs).
//!
//! A reload that fails (a half-written file, a key that does not match the new certificate)
//! keeps the certificate in use and says why, once per change: a renewal gone wrong must not
//! take the server down. At start the same failure is an error: a server is never started
//! with files it cannot use.
//!
//! This module owns reading the PEM files and the rustls server configuration (HTTP/1.1 by
//! ALPN, rustls' safe defaults: TLS 1.2 and 1.3). It does not accept connections or run the
//! handshake; the connection layer does, within its header timeout.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsSettings;

/// How often the files are checked for a change (a `stat` of each).
pub(crate) const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{path} holds no PEM private key (expected PKCS#8 -----BEGIN PRIVATE KEY-----, \
         PKCS#1 RSA or SEC1 EC)"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported
    /// algorithm).
    #[error("cannot use the certificate {cert} with the key {key}: {reason}")]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The certificate in use and the files it is reloaded from.
pub(crate) struct TlsCertificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Loaded>,
}

impl std::fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

struct Loaded {
    acceptor: TlsAcceptor,
    /// The files' state when last looked at (loaded, or a failed reload).
    stamp: Stamp,
}

/// What says a file changed: its modification time and length, for both files.
type Stamp = [Option<(SystemTime, u64)>; 2];

impl TlsCertificates {
    /// Loads `[tls]`'s files; `None` when TLS is off.
    pub(crate) fn load(settings: &TlsSettings) -> Result<Option<Arc<TlsCertificates>>, TlsError> {
        let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
            return Ok(None);
        };
        let stamp = stamp(cert, key);
        let acceptor = acceptor(cert, key)?;
        Ok(Some(Arc::new(TlsCertificates {
            cert: cert.clone(),
            key: key.clone(),
            current: RwLock::new(Loaded { acceptor, stamp }),
        })))
    }

    /// The acceptor for a new connection: the latest certificate that loaded.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current.read().acceptor.clone()
    }

    /// Reloads the files whenever they change, until `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(RELOAD_CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => self.reload_if_changed(),
            }
        }
    }

    /// Loads the files again if they changed since last looked at.
    pub(crate) fn reload_if_changed(&self) {
        let now = stamp(&self.cert, &self.key);
        if now == self.current.read().stamp {
            return;
        }
        match acceptor(&self.cert, &self.key) {
            Ok(acceptor) => {
                *self.current.write() = Loaded {
                    acceptor,
                    stamp: now,
                };
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Remembered as seen, so the warning is not repeated every second; the next
                // change of either file is tried again.
                self.current.write().stamp = now;
                tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the certificate in use");
            }
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let of = |path: &Path| {
        let metadata = fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    };
    [of(cert), of(key)]
}

/// A rustls acceptor for the pair, speaking HTTP/1.1.
// rustls marks its ring provider deprecated for lacking post-quantum key exchange; ring is the
// provider the rest of the tree (reqwest) already uses, and aws-lc-rs would add a C and CMake
// build to every install of a single binary.
#[allow(deprecated)]
fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = read_chain(cert)?;
    let private_key = read_key(key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
        })
        .map_err(|e| TlsError::Refused {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(path, "certificate")?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        fs::write(&cert, generated.cert.pem()).unwrap();
        fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    fn settings(cert: &Path, key: &Path) -> TlsSettings {
        TlsSettings {
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
        }
    }

    #[test]
    fn off_without_files() {
        assert!(TlsCertificates::load(&TlsSettings::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn files_it_cannot_use_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "localhost");
        let missing = dir.path().join("missing.pem");
        let error = TlsCertificates::load(&settings(&missing, &key))
            .err()
            .unwrap();
        assert!(error.to_string().contains("missing.pem"), "{error}");

        fs::write(dir.path().join("empty.pem"), "not a certificate").unwrap();
        let error = TlsCertificates::load(&settings(&dir.path().join("empty.pem"), &key))
            .err()
            .unwrap();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");

        let error = TlsCertificates::load(&settings(&cert, &cert))
            .err()
            .unwrap();
        assert!(matches!(error, TlsError::NoKey { .. }), "{error}");

        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path(), "localhost");
        let error = TlsCertificates::load(&settings(&cert, &other_key))
            .err()
            .unwrap();
        assert!(matches!(error, TlsError::Refused { .. }), "{error}");
    }

    #[test]
    fn a_broken_renewal_keeps_the_certificate_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "localhost");
        let certificates = TlsCertificates::load(&settings(&cert, &key))
            .unwrap()
            .unwrap();
        let before = Arc::as_ptr(certificates.acceptor().config());

        fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
        certificates.reload_if_changed();
        assert_eq!(Arc::as_ptr(certificates.acceptor().config()), before);

        write_pair(dir.path(), "renewed.example");
        certificates.reload_if_changed();
        assert_ne!(
            Arc::as_ptr(certificates.acceptor().config()),
            before,
            "a good renewal is picked up"
        );
    }
}
