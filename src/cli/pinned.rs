//! Trusting exactly one server's certificate: what an admin command does when it found a local
//! TLS server through the data directory's address file ([`crate::discovery`]), which names the
//! server's certificate file.
//!
//! The certificate is pinned, not checked as a chain: the connection is trusted when the server
//! presents one of the certificates of that file as its own, whoever issued it and whatever
//! name it carries. That works for a self-signed certificate (also one that calls itself an
//! authority, as `openssl req -x509` makes by default, which chain checking refuses as a leaf)
//! and for one issued by any authority, and the URL it is used with came from the same file.
//! Handshake signatures are still checked with rustls' own algorithms.
//!
//! This module owns the rustls verifier; it does not read the address file or build requests.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

/// Why the pinned certificates cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PinError {
    /// The file cannot be read.
    #[error("cannot read {0}")]
    Read(#[source] std::io::Error),
    /// The file holds no PEM certificate.
    #[error("it holds no PEM certificate")]
    Empty,
    /// rustls refused the configuration.
    #[error("{0}")]
    Tls(#[from] Error),
}

/// A rustls client configuration that trusts only the certificates of the PEM file `path`.
pub(crate) fn pinned_client_config(path: &Path) -> Result<ClientConfig, PinError> {
    let pem = std::fs::read(path).map_err(PinError::Read)?;
    let pinned: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if pinned.is_empty() {
        return Err(PinError::Empty);
    }
    let provider = Arc::new(ring_provider());
    let verifier = Arc::new(Pinned {
        pinned,
        provider: provider.clone(),
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// ring, the provider the rest of the tree uses (rustls deprecates it for lacking
/// post-quantum key exchange; see `api::connections::tls`).
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// Accepts a server whose own certificate is one of `pinned`.
#[derive(Debug)]
struct Pinned {
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.pinned.iter().any(|cert| cert == end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(
                "the server's certificate is not the one its address file names".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
