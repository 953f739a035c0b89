//! The `[tls]` section: the certificate chain and private key that turn the listener into
//! HTTPS and WSS (`tls.cert`, `tls.key`, `--tls-cert`, `--tls-key`, `TIDINGS_TLS_CERT`,
//! `TIDINGS_TLS_KEY`).
//!
//! This file owns the section's file keys and the rule that the two files come together; it
//! does not read them (the connection layer's [`crate::api::connections::tls`] loads and
//! reloads them, and refuses a server start on files it cannot use).

use std::path::PathBuf;

use serde::Deserialize;

use super::{bad_value, set, ConfigError};

/// The `[tls]` section: both files, or neither (plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, leaf first (`tls.cert`).
    pub cert: Option<PathBuf>,
    /// PEM file with the private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`tls.key`).
    pub key: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the listener speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// The URL scheme clients use: `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.enabled() {
            "https"
        } else {
            "http"
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(bad_value(
                "tls.key",
                "(unset)",
                "a private key file to go with tls.cert (--tls-key, TIDINGS_TLS_KEY)".into(),
            )),
            (None, Some(_)) => Err(bad_value(
                "tls.cert",
                "(unset)",
                "a certificate file to go with tls.key (--tls-cert, TIDINGS_TLS_CERT)".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// `[tls]` as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl FileTls {
    pub(super) fn apply_to(self, tls: &mut TlsSettings) {
        set(&mut tls.cert, self.cert.map(Some));
        set(&mut tls.key, self.key.map(Some));
    }
}
