//! The server's configuration: one [`Config`], assembled from four layers.
//!
//! Precedence, highest first: command-line flags ([`Overrides`] built by `main`), `TIDINGS_*`
//! environment variables ([`ENV_VARS`]), a TOML file (`--config FILE` or `TIDINGS_CONFIG`), then
//! the defaults. Every value is checked here, and a bad one is a [`ConfigError`] that names where
//! it came from (`--listen`, `TIDINGS_DURABILITY`, `log.durability in tidings.toml`); an unknown
//! key in the file is an error, not silently ignored. `docs/configuration.md` lists every setting.
//!
//! This module owns parsing, merging and validation. It does not bind sockets, open the log or
//! install the tracing subscriber: `main` and [`server`](crate::server) act on the result.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::log::{Durability, LogConfig, DEFAULT_MIN_FREE_DISK_BYTES, MAX_PARTITIONS};
use crate::notify::SinkConfig;

mod auth;
mod cluster;
mod http;
mod kafka;
mod tls;
mod ws;
pub use auth::{AuthSettings, ClaimNames, JwksLocation};
pub use cluster::ClusterConfig;
pub use http::HttpSettings;
pub use kafka::KafkaSettings;
pub use tls::TlsSettings;
pub use ws::WsSettings;

/// The fully resolved, validated configuration of `tidings serve`.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// Address the HTTP server binds (`listen`).
    pub listen: SocketAddr,
    /// The data directory: the log, the store and the generated secret live here (`dataDir`).
    pub data_dir: PathBuf,
    /// The embedded log (`[log]`).
    pub log: LogSettings,
    /// Request and rate limits (`[limits]`).
    pub limits: Limits,
    /// The chat service (`[chat]`).
    pub chat: ChatSettings,
    /// Authentication (`[auth]`).
    pub auth: AuthSettings,
    /// WebSocket sessions (`[ws]`).
    pub ws: WsSettings,
    /// HTTP connections and reading their requests (`[http]`).
    pub http: HttpSettings,
    /// Diagnostic output of the process (`[logging]`).
    pub logging: LoggingSettings,
    /// Notification sinks (`[[notify.sinks]]`, file only).
    pub notify: NotifySettings,
    /// The SignalR hub (`[signalr]`, file only).
    pub signalr: SignalrSettings,
    /// HTTPS and WSS on the listener (`[tls]`).
    pub tls: TlsSettings,
    /// The Kafka wire-protocol listener (`[kafka]`).
    pub kafka: KafkaSettings,
    /// The NATS JetStream cluster the node runs on instead of the embedded log (`[cluster]`).
    pub cluster: ClusterConfig,
}

/// The `[signalr]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalrSettings {
    /// Where the hub is served (`signalr.path`); negotiation is at this path + `/negotiate`.
    pub path: String,
}

impl Default for SignalrSettings {
    fn default() -> Self {
        SignalrSettings {
            path: "/chathub".into(),
        }
    }
}

impl SignalrSettings {
    /// The path must be one the router can serve beside its own routes: absolute, plain
    /// segments, and none of the server's other paths.
    fn validate(&self) -> Result<(), ConfigError> {
        let path = self.path.as_str();
        let plain_segments = path.len() > 1
            && path.starts_with('/')
            && path[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
            });
        let taken = ["/ws", "/api", "/healthz", "/readyz", "/metrics"]
            .iter()
            .any(|own| path == *own || path.starts_with(&format!("{own}/")));
        if !plain_segments || taken {
            return Err(bad_value(
                "signalr.path",
                path,
                "an absolute path of plain segments such as /chathub or /hubs/chat, not one of \
                 the server's own (/api, /ws, /healthz, /readyz, /metrics)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The `[notify]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// Most bytes of a message's text in a `message.new` notification (`notify.previewBytes`).
    pub preview_bytes: usize,
    /// The sinks `message.new` is delivered to, each its own consumer group.
    pub(crate) sinks: Vec<SinkConfig>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            preview_bytes: crate::pipeline::notify::DEFAULT_PREVIEW_BYTES,
            sinks: Vec::new(),
        }
    }
}

/// The `[log]` section: how the embedded log is opened.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// When appends are acknowledged relative to `fdatasync` (`log.durability`).
    pub durability: Durability,
    /// Partitions of a topic created on its first append (`log.defaultPartitions`).
    pub default_partitions: u32,
}

/// The `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Write tokens per second of one user's budget (burst twice that), which every kind of
    /// write takes from; 0 turns limiting off.
    pub rate_limit: u32,
    /// Largest accepted HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted message content, in bytes.
    pub max_content_bytes: usize,
    /// Largest accepted log record (key + headers + value), in bytes.
    pub max_record_bytes: usize,
    /// Most records one `POST /api/topics/{name}/records` may carry (`limits.maxBatchRecords`).
    pub max_batch_records: usize,
    /// Most chat records accepted but not yet applied by the store (summed over partitions)
    /// before writes are refused with 503 (`limits.maxStoreLag`).
    pub max_store_lag: u64,
    /// Most participants of one conversation (`limits.maxParticipants`).
    pub max_participants: usize,
    /// Most topics the log holds, chat's own included (`limits.maxTopics`).
    pub max_topics: usize,
    /// Most partitions of all topics together (`limits.maxPartitions`).
    pub max_partitions: u64,
    /// Most consumer groups the event bus knows: live ones and those with committed offsets
    /// (`limits.maxGroups`).
    pub max_groups: usize,
    /// Writes are refused with 503 `storage-full` while the data directory's disk has less
    /// free space than this, in bytes; 0 turns the guard off (`limits.minFreeDiskBytes`).
    pub min_free_disk_bytes: u64,
}

/// The `[chat]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSettings {
    /// Partitions of the `messages` and `messages.sent` topics when they are created
    /// (`chat.partitions`); existing topics keep theirs.
    pub partitions: u32,
}

/// The `[logging]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    /// Human-readable lines or one JSON object per line.
    pub format: LogFormat,
    /// A tracing filter directive (`info`, `tidings=debug,tower_http=warn`, …).
    pub level: String,
}

/// How the process writes its diagnostic log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: expected text or json")),
        }
    }
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Default most consumer groups (`limits.maxGroups`).
pub(crate) const DEFAULT_MAX_GROUPS: usize = 10_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("./data"),
            log: LogSettings {
                durability: Durability::Always,
                default_partitions: 8,
            },
            limits: Limits {
                rate_limit: 50,
                max_body_bytes: 1024 * 1024,
                max_content_bytes: 16 * 1024,
                max_record_bytes: 1024 * 1024,
                max_batch_records: 1000,
                max_store_lag: 100_000,
                max_participants: crate::store::DEFAULT_MAX_PARTICIPANTS,
                max_topics: crate::log::DEFAULT_MAX_TOPICS,
                max_partitions: crate::log::DEFAULT_MAX_TOTAL_PARTITIONS,
                max_groups: DEFAULT_MAX_GROUPS,
                min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            },
            chat: ChatSettings { partitions: 4 },
            auth: AuthSettings::default(),
            ws: WsSettings::default(),
            http: HttpSettings::default(),
            logging: LoggingSettings {
                format: LogFormat::Text,
                level: "info".into(),
            },
            notify: NotifySettings::default(),
            signalr: SignalrSettings::default(),
            tls: TlsSettings::default(),
            kafka: KafkaSettings::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("log", &self.log)
            .field("limits", &self.limits)
            .field("chat", &self.chat)
            .field("auth", &self.auth)
            .field("ws", &self.ws)
            .field("http", &self.http)
            .field("logging", &self.logging)
            .field("notify", &self.notify)
            .field("signalr", &self.signalr)
            .field("tls", &self.tls)
            .field("kafka", &self.kafka)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("configuration file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and the line).
        message: String,
    },
    /// A listen address is not `IP:PORT`.
    #[error(
        "{origin}: {value:?} is not a listen address; expected IP:PORT such as 127.0.0.1:8787"
    )]
    BadAddress {
        /// Where the value came from (a flag, an environment variable, or a key in a file).
        origin: String,
        /// The rejected value.
        value: String,
    },
    /// A durability mode is not one of the known ones.
    #[error("{origin}: {value:?} is not a durability mode; expected always, interval, interval:MS or never")]
    BadDurability {
        /// Where the value came from.
        origin: String,
        /// The rejected value.
        value: String,
    },
    /// Any other value out of range or of the wrong form.
    #[error("{origin}: {value:?} is not valid: {expected}")]
    BadValue {
        /// Where the value came from.
        origin: String,
        /// The rejected value.
        value: String,
        /// What is accepted.
        expected: String,
    },
}

/// Values that override the file and the defaults: the command-line flags, or the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `TIDINGS_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir` / `TIDINGS_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--rate-limit` / `TIDINGS_RATE_LIMIT`.
    pub rate_limit: Option<u32>,
    /// `--durability` / `TIDINGS_DURABILITY`.
    pub durability: Option<Durability>,
    /// `--log-format` / `TIDINGS_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--log-level` / `TIDINGS_LOG_LEVEL`.
    pub log_level: Option<String>,
    /// `TIDINGS_CHAT_PARTITIONS` (no flag).
    pub chat_partitions: Option<u32>,
    /// `--max-sessions` / `TIDINGS_WS_MAX_SESSIONS`.
    pub max_sessions: Option<usize>,
    /// `TIDINGS_JWT_SECRET` (no flag: command lines are visible to every user of the machine).
    pub jwt_secret: Option<String>,
    /// `TIDINGS_HTTP_MAX_CONNECTIONS` (no flag).
    pub max_connections: Option<usize>,
    /// `--tls-cert` / `TIDINGS_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` / `TIDINGS_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
    /// `--kafka-listen` / `TIDINGS_KAFKA_LISTEN`.
    pub kafka_listen: Option<SocketAddr>,
    /// `--cluster` / `TIDINGS_CLUSTER`: NATS URLs, comma-separated.
    pub cluster: Option<Vec<String>>,
}

/// The environment variables read, and the setting each one sets. Anything else is file-only.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("TIDINGS_CONFIG", "the configuration file (like --config)"),
    ("TIDINGS_LISTEN", "listen"),
    ("TIDINGS_DATA_DIR", "dataDir"),
    ("TIDINGS_RATE_LIMIT", "limits.rateLimit"),
    ("TIDINGS_CHAT_PARTITIONS", "chat.partitions"),
    ("TIDINGS_WS_MAX_SESSIONS", "ws.maxSessions"),
    ("TIDINGS_HTTP_MAX_CONNECTIONS", "http.maxConnections"),
    ("TIDINGS_DURABILITY", "log.durability"),
    ("TIDINGS_LOG_FORMAT", "logging.format"),
    ("TIDINGS_LOG_LEVEL", "logging.level"),
    ("TIDINGS_JWT_SECRET", "auth.jwtSecret"),
    ("TIDINGS_TLS_CERT", "tls.cert"),
    ("TIDINGS_TLS_KEY", "tls.key"),
    ("TIDINGS_KAFKA_LISTEN", "kafka.listen"),
    ("TIDINGS_CLUSTER", "cluster.urls"),
];

impl Overrides {
    /// Reads the `TIDINGS_*` variables through `env` (empty values count as unset), checking
    /// each value and naming the variable in the error.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Overrides, ConfigError> {
        let get = |name: &str| env(name).filter(|value| !value.is_empty());
        let origin = |name: &str| name.to_owned();
        Ok(Overrides {
            listen: get("TIDINGS_LISTEN")
                .map(|v| parse_address(&v, origin("TIDINGS_LISTEN")))
                .transpose()?,
            data_dir: get("TIDINGS_DATA_DIR").map(PathBuf::from),
            rate_limit: get("TIDINGS_RATE_LIMIT")
                .map(|v| parse_number(&v, origin("TIDINGS_RATE_LIMIT")))
                .transpose()?,
            durability: get("TIDINGS_DURABILITY")
                .map(|v| parse_durability(&v, origin("TIDINGS_DURABILITY")))
                .transpose()?,
            log_format: get("TIDINGS_LOG_FORMAT")
                .map(|v| parse_format(&v, origin("TIDINGS_LOG_FORMAT")))
                .transpose()?,
            log_level: get("TIDINGS_LOG_LEVEL"),
            chat_partitions: get("TIDINGS_CHAT_PARTITIONS")
                .map(|v| parse_number(&v, origin("TIDINGS_CHAT_PARTITIONS")))
                .transpose()?,
            max_sessions: get("TIDINGS_WS_MAX_SESSIONS")
                .map(|v| parse_number(&v, origin("TIDINGS_WS_MAX_SESSIONS")).map(|n| n as usize))
                .transpose()?,
            jwt_secret: get("TIDINGS_JWT_SECRET"),
            max_connections: get("TIDINGS_HTTP_MAX_CONNECTIONS")
                .map(|v| {
                    parse_number(&v, origin("TIDINGS_HTTP_MAX_CONNECTIONS")).map(|n| n as usize)
                })
                .transpose()?,
            tls_cert: get("TIDINGS_TLS_CERT").map(PathBuf::from),
            tls_key: get("TIDINGS_TLS_KEY").map(PathBuf::from),
            kafka_listen: get("TIDINGS_KAFKA_LISTEN")
                .map(|v| parse_address(&v, origin("TIDINGS_KAFKA_LISTEN")))
                .transpose()?,
            cluster: get("TIDINGS_CLUSTER").map(|v| ClusterConfig::parse_urls(&v)),
        })
    }

    fn apply_to(self, config: &mut Config) {
        let Overrides {
            listen,
            data_dir,
            rate_limit,
            durability,
            log_format,
            log_level,
            chat_partitions,
            max_sessions,
            jwt_secret,
            max_connections,
            tls_cert,
            tls_key,
            kafka_listen,
            cluster,
        } = self;
        set(&mut config.listen, listen);
        set(&mut config.data_dir, data_dir);
        set(&mut config.limits.rate_limit, rate_limit);
        set(&mut config.log.durability, durability);
        set(&mut config.logging.format, log_format);
        set(&mut config.logging.level, log_level);
        set(&mut config.chat.partitions, chat_partitions);
        set(&mut config.ws.max_sessions, max_sessions);
        set(&mut config.http.max_connections, max_connections);
        set(&mut config.tls.cert, tls_cert.map(Some));
        set(&mut config.tls.key, tls_key.map(Some));
        if kafka_listen.is_some() {
            config.kafka.listen = kafka_listen;
        }
        set(&mut config.cluster.urls, cluster);
        if let Some(secret) = jwt_secret {
            config.auth.override_secret(secret);
        }
    }
}

impl Config {
    /// Resolves the configuration of this process: `flags`, then the process environment, then
    /// `file` (or `TIDINGS_CONFIG`), then the defaults.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Config, ConfigError> {
        Config::load_with_env(file, flags, |name| std::env::var(name).ok())
    }

    /// [`load`](Self::load) with the environment given as a function (for tests and embedders).
    pub fn load_with_env(
        file: Option<&Path>,
        flags: Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env_file = env("TIDINGS_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let env_overrides = Overrides::from_env(&env)?;
        // The file is checked with the other layers over it: one may complete another (a
        // certificate in the file, its key in the environment).
        let mut config = match file.map(Path::to_path_buf).or(env_file) {
            Some(path) => Config::parse_file(&path)?,
            None => Config::default(),
        };
        env_overrides.apply_to(&mut config);
        flags.apply_to(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// The defaults overlaid with a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse_file(path)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults overlaid with TOML text; `path` names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse_toml(text, path)?;
        config.validate()?;
        Ok(config)
    }

    /// [`from_file`](Self::from_file) without the range checks across sections.
    fn parse_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_toml(&text, path)
    }

    fn parse_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut config = Config::default();
        file.apply_to(&mut config, path)?;
        Ok(config)
    }

    /// The log's configuration for this server.
    pub(crate) fn log_config(&self) -> LogConfig {
        let mut log = LogConfig::new(&self.data_dir);
        log.durability = self.log.durability;
        log.default_partitions = self.log.default_partitions;
        log.max_record_bytes = self.limits.max_record_bytes;
        log.max_topics = self.limits.max_topics;
        log.max_total_partitions = self.limits.max_partitions;
        log.min_free_disk_bytes = self.limits.min_free_disk_bytes;
        log
    }

    /// How the `notify` group makes notifications.
    pub(crate) fn notify_settings(&self) -> crate::pipeline::notify::NotifySettings {
        crate::pipeline::notify::NotifySettings {
            preview_bytes: self.notify.preview_bytes,
        }
    }

    /// The chat store's limits for this server.
    pub(crate) fn store_limits(&self) -> crate::store::StoreLimits {
        crate::store::StoreLimits {
            max_participants: self.limits.max_participants,
        }
    }

    /// Range checks that no single layer can make on its own.
    fn validate(&self) -> Result<(), ConfigError> {
        let partitions = [
            ("log.defaultPartitions", self.log.default_partitions),
            ("chat.partitions", self.chat.partitions),
        ];
        for (key, value) in partitions {
            if value == 0 || value > MAX_PARTITIONS {
                return Err(bad_value(
                    key,
                    value,
                    format!("between 1 and {MAX_PARTITIONS}"),
                ));
            }
        }
        if self.notify.preview_bytes == 0 {
            return Err(bad_value(
                "notify.previewBytes",
                0,
                "a positive number".into(),
            ));
        }
        let sizes = [
            ("limits.maxBodyBytes", self.limits.max_body_bytes),
            ("limits.maxContentBytes", self.limits.max_content_bytes),
            ("limits.maxRecordBytes", self.limits.max_record_bytes),
            ("limits.maxBatchRecords", self.limits.max_batch_records),
            ("limits.maxParticipants", self.limits.max_participants),
            ("limits.maxTopics", self.limits.max_topics),
            ("limits.maxGroups", self.limits.max_groups),
        ];
        for (key, value) in sizes {
            if value == 0 {
                return Err(bad_value(key, value, "a positive number".into()));
            }
        }
        if self.limits.max_partitions == 0 {
            return Err(bad_value(
                "limits.maxPartitions",
                0,
                "a positive number".into(),
            ));
        }
        self.auth.validate()?;
        self.ws.validate()?;
        self.http.validate()?;
        self.signalr.validate()?;
        self.tls.validate()?;
        self.kafka.validate()?;
        self.cluster.validate()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            return Err(bad_value(
                "logging.level",
                &self.logging.level,
                format!("a tracing filter such as info or tidings=debug ({e})"),
            ));
        }
        Ok(())
    }
}

fn bad_value(key: &str, value: impl fmt::Display, expected: String) -> ConfigError {
    ConfigError::BadValue {
        origin: key.into(),
        value: value.to_string(),
        expected,
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

fn parse_address(value: &str, origin: String) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadAddress {
        origin,
        value: value.into(),
    })
}

fn parse_durability(value: &str, origin: String) -> Result<Durability, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadDurability {
        origin,
        value: value.into(),
    })
}

fn parse_format(value: &str, origin: String) -> Result<LogFormat, ConfigError> {
    value.parse().map_err(|expected| ConfigError::BadValue {
        origin,
        value: value.into(),
        expected,
    })
}

fn parse_number(value: &str, origin: String) -> Result<u32, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadValue {
        origin,
        value: value.into(),
        expected: "a whole number".into(),
    })
}

/// The TOML file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    log: Option<FileLog>,
    limits: Option<FileLimits>,
    chat: Option<FileChat>,
    auth: Option<auth::FileAuth>,
    ws: Option<ws::FileWs>,
    http: Option<http::FileHttp>,
    logging: Option<FileLogging>,
    notify: Option<notify::FileNotify>,
    signalr: Option<FileSignalr>,
    tls: Option<tls::FileTls>,
    kafka: Option<kafka::FileKafka>,
    cluster: Option<cluster::FileCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileSignalr {
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileLog {
    durability: Option<String>,
    default_partitions: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileLimits {
    rate_limit: Option<u32>,
    max_body_bytes: Option<usize>,
    max_content_bytes: Option<usize>,
    max_record_bytes: Option<usize>,
    max_batch_records: Option<usize>,
    max_store_lag: Option<u64>,
    max_participants: Option<usize>,
    max_topics: Option<usize>,
    max_partitions: Option<u64>,
    max_groups: Option<usize>,
    min_free_disk_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileChat {
    partitions: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileLogging {
    format: Option<String>,
    level: Option<String>,
}

impl FileConfig {
    fn apply_to(self, config: &mut Config, path: &Path) -> Result<(), ConfigError> {
        let origin = |key: &str| format!("{key} in {}", path.display());
        if let Some(listen) = self.listen {
            config.listen = parse_address(&listen, origin("listen"))?;
        }
        set(&mut config.data_dir, self.data_dir);
        let log = self.log.unwrap_or_default();
        if let Some(durability) = log.durability {
            config.log.durability = parse_durability(&durability, origin("log.durability"))?;
        }
        set(&mut config.log.default_partitions, log.default_partitions);
        let limits = self.limits.unwrap_or_default();
        set(&mut config.limits.rate_limit, limits.rate_limit);
        set(&mut config.limits.max_body_bytes, limits.max_body_bytes);
        set(
            &mut config.limits.max_content_bytes,
            limits.max_content_bytes,
        );
        set(&mut config.limits.max_record_bytes, limits.max_record_bytes);
        set(
            &mut config.limits.max_batch_records,
            limits.max_batch_records,
        );
        set(&mut config.limits.max_store_lag, limits.max_store_lag);
        set(&mut config.limits.max_participants, limits.max_participants);
        set(&mut config.limits.max_topics, limits.max_topics);
        set(&mut config.limits.max_partitions, limits.max_partitions);
        set(&mut config.limits.max_groups, limits.max_groups);
        set(
            &mut config.limits.min_free_disk_bytes,
            limits.min_free_disk_bytes,
        );
        let chat = self.chat.unwrap_or_default();
        set(&mut config.chat.partitions, chat.partitions);
        if let Some(auth) = self.auth {
            auth.apply_to(&mut config.auth);
        }
        self.ws.unwrap_or_default().apply_to(&mut config.ws);
        self.http.unwrap_or_default().apply_to(&mut config.http)?;
        let logging = self.logging.unwrap_or_default();
        if let Some(format) = logging.format {
            config.logging.format = parse_format(&format, origin("logging.format"))?;
        }
        set(&mut config.logging.level, logging.level);
        set(
            &mut config.signalr.path,
            self.signalr.unwrap_or_default().path,
        );
        self.tls.unwrap_or_default().apply_to(&mut config.tls);
        if let Some(kafka) = self.kafka {
            kafka.apply_to(&mut config.kafka, origin)?;
        }
        if let Some(cluster) = self.cluster {
            cluster.apply_to(&mut config.cluster);
        }
        if let Some(notify) = self.notify {
            set(&mut config.notify.preview_bytes, notify.preview_bytes);
            config.notify.sinks = notify.into_sinks(path)?;
        }
        Ok(())
    }
}

mod notify;
#[cfg(test)]
mod tests;
