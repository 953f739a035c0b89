//! How an admin command reaches the data: over HTTP to a running server, or by opening the data
//! directory itself.
//!
//! The rule: with `--server URL` (or `TIDINGS_SERVER`) always HTTP, and the data directory is
//! only read for the secret that signs the token when `--token` is not given. Without it the
//! command opens the data directory; when a process holds the directory
//! ([`LogError::Locked`]) and a running server advertises itself in it
//! ([`crate::discovery`]), the command asks that server instead, saying so on stderr; when no
//! server does, it fails with a message that suggests `--server`.
//!
//! This module only chooses and connects; the commands do their work on the [`Target`] it
//! returns.

use std::path::Path;

use super::remote::{Credentials, Remote};
use super::token::running_server_authenticator;
use super::{open_log, Access, CommonArgs};
use crate::discovery;
use crate::log::{Log, LogError};

/// Where a command does its work.
#[derive(Debug)]
pub(crate) enum Target {
    /// The data directory, opened by this process.
    Local(Log),
    /// A running server, over HTTP.
    Remote(Remote),
}

/// Connects as the options say (see the module's documentation).
pub(crate) fn connect(common: &CommonArgs, access: Access) -> anyhow::Result<Target> {
    if let Some(server) = &common.server {
        return Ok(Target::Remote(remote(common, server, None)?));
    }
    match open_log(common, access) {
        Ok(log) => Ok(Target::Local(log)),
        Err(error) => match error.downcast_ref::<LogError>() {
            Some(LogError::Locked { path, holder }) => held_directory(common, path, holder),
            _ => Err(error),
        },
    }
}

/// A client of `server` with `--token`, else a token signed with the server's secret;
/// with `certificate`, trusting only that certificate (see [`super::pinned`]).
fn remote(common: &CommonArgs, server: &str, certificate: Option<&Path>) -> anyhow::Result<Remote> {
    let credentials = match &common.token {
        Some(token) => Credentials::Token(token.clone()),
        None => Credentials::Minted(Box::new(running_server_authenticator(
            common.config.as_deref(),
            common.data_dir.clone(),
        )?)),
    };
    Ok(Remote::new(server, credentials, certificate)?)
}

/// The directory is held: ask the server that advertises itself in it, if one does.
fn held_directory(common: &CommonArgs, dir: &Path, holder: &str) -> anyhow::Result<Target> {
    match discovery::read_address(dir) {
        Some(url) => {
            eprintln!(
                "note: {} is held by the server at {url} (from {}); asking it",
                dir.display(),
                discovery::ADDRESS_FILE
            );
            let certificate = discovery::read_certificate(dir);
            Ok(Target::Remote(remote(
                common,
                &url,
                certificate.as_deref(),
            )?))
        }
        None => anyhow::bail!(
            "the data directory {} is in use by another process{holder}; if that is `tidings \
             serve`, ask the server instead: --server http://ADDR (or TIDINGS_SERVER); otherwise \
             stop that process, or point --data-dir elsewhere",
            dir.display()
        ),
    }
}
