//! The flags of `tidings serve` and the [`Overrides`] they make.
//!
//! They live in the library, not in `main`, so that whoever starts [`crate::server::run`]
//! without the binary (the integration tests run it in their own process) reads the same flags
//! with the same parser and resolves them into the same [`Config`]. Binding, logging and signal
//! handling stay in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ClusterConfig, Config, ConfigError, LogFormat, Overrides};
use crate::log::Durability;

/// Flags of `tidings serve`; each beats its `TIDINGS_*` variable and the file
/// (docs/configuration.md lists them all).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free one) [default: 127.0.0.1:8787]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file (also TIDINGS_CONFIG)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Messages per second per user, burst 2N; 0 turns limiting off [default: 50]
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// When appends are acknowledged: always, interval, interval:MS or never [default: always]
    #[arg(long, value_name = "MODE", value_parser = parse_durability)]
    pub durability: Option<Durability>,
    /// Most WebSocket sessions at once; 0 = what the open-file limit allows [default: 0]
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Diagnostic log format on stderr: text or json [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Diagnostic log filter, e.g. info or tidings=debug [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key; reloaded when it changes)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve the Kafka wire protocol on IP:PORT (off unless given) [usual: 127.0.0.1:9092]
    #[arg(long, value_name = "ADDR")]
    pub kafka_listen: Option<SocketAddr>,
    /// Run as one node of several on a NATS JetStream cluster instead of the embedded log:
    /// nats://HOST:PORT[,…] (off unless given; docs/cluster.md)
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,
}

impl ServeArgs {
    /// What the flags override (the flags without a value override nothing).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            rate_limit: self.rate_limit,
            durability: self.durability,
            log_format: self.log_format,
            log_level: self.log_level.clone(),
            chat_partitions: None,
            max_sessions: self.max_sessions,
            jwt_secret: None,
            max_connections: None,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            kafka_listen: self.kafka_listen,
            cluster: self.cluster.as_deref().map(ClusterConfig::parse_urls),
        }
    }

    /// The configuration these flags select: the flags, then the environment `env` gives,
    /// then `--config` (or `TIDINGS_CONFIG`), then the defaults ([`Config::load_with_env`]).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::load_with_env(self.config.as_deref(), self.overrides(), env)
    }
}

/// Durability from a flag, with a message that does not blame a topic (the log's parser does).
fn parse_durability(value: &str) -> Result<Durability, String> {
    value
        .parse()
        .map_err(|_| "expected always, interval, interval:MS or never".to_owned())
}
