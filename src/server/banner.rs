//! The start-up banner: what an operator must know about a server that starts, as INFO lines
//! of the server's log, and the final `ready` line once `/readyz` answers 200.
//!
//! In order: the version, the absolute data directory and the durability mode ([`starting`]);
//! the listener ([`listening`]); where the token secret comes from ([`secret_source`], once the
//! log accepted the data directory); the notification sinks ([`sinks`]); and `ready`
//! ([`ready`]). Secrets never appear: the secret's *source* is named, webhook URLs lose any
//! user, password and query.
//!
//! This module decides nothing; `server.rs` calls it at each step of the start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::auth::SECRET_FILE;
use crate::config::Config;
use crate::log::Durability;
use crate::notify::{SinkConfig, SinkKind};

/// `tidings VERSION starting`, with the absolute data directory and the durability mode.
pub(super) fn starting(config: &Config) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %absolute(&config.data_dir).display(),
        durability = %durability(config.log.durability),
        "tidings {} starting",
        env!("CARGO_PKG_VERSION")
    );
}

/// The address HTTP, the WebSockets, SignalR and Socket.IO are served on.
pub(super) fn listening(scheme: &str, address: SocketAddr) {
    tracing::info!(url = %format!("{scheme}://{address}"), "listening");
}

/// Where the HS256 token secret comes from: the configuration, or the data directory's file.
pub(super) fn secret_source(config: &Config) {
    let auth = &config.auth;
    let source = match (&auth.jwt_secret, &auth.jwt_secret_file) {
        (Some(_), _) => "auth.jwtSecret in the configuration".to_owned(),
        (None, Some(file)) => format!("auth.jwtSecretFile {}", absolute(file).display()),
        (None, None) => absolute(&config.data_dir.join(SECRET_FILE))
            .display()
            .to_string(),
    };
    tracing::info!(source = %source, "token secret");
}

/// The notification sinks `message.new` goes to, or `none`.
pub(super) fn sinks(config: &Config) {
    let sinks = &config.notify.sinks;
    let listed = if sinks.is_empty() {
        "none".to_owned()
    } else {
        sinks
            .iter()
            .map(describe_sink)
            .collect::<Vec<_>>()
            .join(", ")
    };
    tracing::info!(count = sinks.len(), sinks = %listed, "notification sinks");
}

/// The last line of the start: the server is ready (as `/readyz` now says).
pub(super) fn ready(started: Instant) {
    tracing::info!(
        startup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "ready"
    );
}

/// `name (webhook http://host:port/path)` or `name (log)`.
fn describe_sink(sink: &SinkConfig) -> String {
    match &sink.kind {
        SinkKind::Webhook(webhook) => {
            let mut url = webhook.url.clone();
            // Credentials can sit in a URL; the banner is no place for them.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            format!("{} (webhook {url})", sink.name)
        }
        SinkKind::Log => format!("{} (log)", sink.name),
    }
}

/// What the mode promises, in a few words.
fn durability(mode: Durability) -> String {
    match mode {
        Durability::Always => "always (each ack after fdatasync)".into(),
        Durability::Interval(every) => format!(
            "interval:{} (a crash may lose the last {} ms of acked writes)",
            every.as_millis(),
            every.as_millis()
        ),
        Durability::Never => "never (a crash may lose acked writes: tests only)".into(),
    }
}

/// `path` made absolute and free of `..` where the file system can say; else as absolute as
/// the working directory makes it.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_lose_their_credentials_in_the_banner() {
        let text = "[[notify.sinks]]\nname = \"hooks\"\ntype = \"webhook\"\n\
                    url = \"http://user:pass@127.0.0.1:9/in?key=k\"\nsecret = \"0123456789abcdef\"\n\
                    [[notify.sinks]]\nname = \"audit\"\ntype = \"log\"\n";
        let config = Config::from_toml(text, Path::new("t.toml")).unwrap();
        let described: Vec<String> = config.notify.sinks.iter().map(describe_sink).collect();
        assert_eq!(
            described,
            ["hooks (webhook http://127.0.0.1:9/in)", "audit (log)"]
        );
    }

    #[test]
    fn a_relative_data_directory_is_shown_absolute() {
        let shown = absolute(Path::new("no-such-dir/data"));
        assert!(shown.is_absolute(), "{}", shown.display());
        assert!(shown.ends_with("no-such-dir/data"));
    }
}
