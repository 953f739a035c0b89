//! The `[notify]` section of the configuration file: the notification sinks, as
//! `[[notify.sinks]]` tables, checked into [`SinkConfig`]s. Errors name the key and the file
//! (`notify.sinks[0].url in tidings.toml`). Sinks are file-only: a secret does not belong on a
//! command line, and a list does not fit an environment variable.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{bad_value, ConfigError};
use crate::notify::{
    Backoff, SinkConfig, SinkKind, StartFrom, WebhookConfig, DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT,
};

/// Longest sink name (its consumer group `notify.sink.NAME` must stay a valid group name).
const MAX_SINK_NAME: usize = 200;

/// `[notify]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileNotify {
    pub(super) preview_bytes: Option<usize>,
    #[serde(default)]
    sinks: Vec<FileSink>,
}

/// One `[[notify.sinks]]` table as written; which keys apply depends on `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileSink {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    concurrency: Option<usize>,
    start_from: Option<String>,
}

impl FileNotify {
    /// The sinks, checked; `path` names the file in errors.
    pub(super) fn into_sinks(self, path: &Path) -> Result<Vec<SinkConfig>, ConfigError> {
        let mut names = HashSet::new();
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (index, sink) in self.sinks.into_iter().enumerate() {
            let origin = |key: &str| format!("notify.sinks[{index}].{key} in {}", path.display());
            let sink = sink.into_config(&origin)?;
            if !names.insert(sink.name.clone()) {
                return Err(bad_value(
                    &origin("name"),
                    &sink.name,
                    "a name no other sink has".into(),
                ));
            }
            sinks.push(sink);
        }
        Ok(sinks)
    }
}

impl FileSink {
    fn into_config(self, origin: &dyn Fn(&str) -> String) -> Result<SinkConfig, ConfigError> {
        let name = self.name.clone().unwrap_or_default();
        check_name(&name, origin)?;
        let start_from = match self.start_from.as_deref() {
            None | Some("latest") => StartFrom::Latest,
            Some("earliest") => StartFrom::Earliest,
            Some(other) => {
                return Err(bad_value(
                    &origin("startFrom"),
                    other,
                    "\"latest\" or \"earliest\"".into(),
                ))
            }
        };
        let kind = match self.kind.as_deref() {
            Some("webhook") => SinkKind::Webhook(self.into_webhook(origin)?),
            Some("log") => {
                self.refuse_webhook_keys(origin)?;
                SinkKind::Log
            }
            other => {
                return Err(bad_value(
                    &origin("type"),
                    other.unwrap_or(""),
                    "\"webhook\" or \"log\"".into(),
                ))
            }
        };
        Ok(SinkConfig {
            name,
            kind,
            start_from,
        })
    }

    fn into_webhook(self, origin: &dyn Fn(&str) -> String) -> Result<WebhookConfig, ConfigError> {
        let url = parse_url(self.url.as_deref().unwrap_or(""), &origin("url"))?;
        let secret = self.secret.unwrap_or_default();
        if secret.is_empty() {
            return Err(bad_value(
                &origin("secret"),
                "",
                "a non-empty HMAC secret (a webhook sink signs every request)".into(),
            ));
        }
        let backoff = Backoff {
            base: Duration::from_millis(self.backoff_base_ms.unwrap_or(200)),
            max: Duration::from_millis(self.backoff_max_ms.unwrap_or(30_000)),
        };
        let config = WebhookConfig {
            url,
            secret,
            max_attempts: self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            timeout: self
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            backoff,
            concurrency: self.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        };
        check_webhook_numbers(&config, origin)?;
        Ok(config)
    }

    fn refuse_webhook_keys(&self, origin: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let set = [
            ("url", self.url.is_some()),
            ("secret", self.secret.is_some()),
            ("maxAttempts", self.max_attempts.is_some()),
            ("timeoutMs", self.timeout_ms.is_some()),
            ("backoffBaseMs", self.backoff_base_ms.is_some()),
            ("backoffMaxMs", self.backoff_max_ms.is_some()),
            ("concurrency", self.concurrency.is_some()),
        ];
        match set.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(bad_value(
                &origin(key),
                "(set)",
                "nothing: a log sink takes only name and type".into(),
            )),
            None => Ok(()),
        }
    }
}

fn check_name(name: &str, origin: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SINK_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(bad_value(
            &origin("name"),
            name,
            format!("1–{MAX_SINK_NAME} characters of [A-Za-z0-9._-]"),
        ))
    }
}

/// An absolute `http://` URL with a host.
fn parse_url(text: &str, origin: &str) -> Result<reqwest::Url, ConfigError> {
    let expected = "an absolute http:// URL such as http://127.0.0.1:9000/notify (https needs a \
                    TLS stack this build does not include)";
    match reqwest::Url::parse(text) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => Ok(url),
        _ => Err(bad_value(origin, text, expected.into())),
    }
}

fn check_webhook_numbers(
    config: &WebhookConfig,
    origin: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if config.max_attempts == 0 {
        return Err(bad_value(&origin("maxAttempts"), 0, "at least 1".into()));
    }
    if config.timeout.is_zero() {
        return Err(bad_value(
            &origin("timeoutMs"),
            0,
            "a positive number".into(),
        ));
    }
    if config.concurrency == 0 {
        return Err(bad_value(&origin("concurrency"), 0, "at least 1".into()));
    }
    if config.backoff.base.is_zero() || config.backoff.max < config.backoff.base {
        return Err(bad_value(
            &origin("backoffMaxMs"),
            config.backoff.max.as_millis(),
            format!(
                "positive, and at least backoffBaseMs ({} ms)",
                config.backoff.base.as_millis()
            ),
        ));
    }
    Ok(())
}
