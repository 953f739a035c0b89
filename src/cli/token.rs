//! `tidings token USER`: prints a token signed with the server's secret, so a fresh install can
//! be tried at once (`curl -H "Authorization: Bearer $(tidings token alice)" …`).
//!
//! The secret is found as the server finds it: `auth.jwtSecret` from `--config FILE` (or
//! `TIDINGS_JWT_SECRET`), else `DATA_DIR/secret.key`, created if missing. It needs no lock on
//! the data directory, so it works while the server runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::config::{Config, Overrides};

/// Options of `tidings token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The user id the token speaks for (its `sub`).
    pub user: String,
    /// Display name (`name` claim).
    #[arg(long)]
    pub name: Option<String>,
    /// A scope to grant (repeatable): events:publish, events:consume, admin.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// How long the token is valid, e.g. 30m, 24h, 7days.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The data directory whose secret.key signs the token [default: ./data].
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration file (its auth.jwtSecret or dataDir decides the secret).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The authenticator a server with this configuration file (or data directory) uses: its
/// `auth.jwtSecret`, else its data directory's `secret.key` (created if missing). Shared by the
/// commands that mint tokens (`token`, `bench send`).
pub fn server_authenticator(
    config_file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Authenticator> {
    let overrides = Overrides {
        data_dir,
        ..Overrides::default()
    };
    let config = Config::load(config_file, overrides)?;
    Ok(Authenticator::from_config(
        config.auth.jwt_secret.as_deref(),
        &config.data_dir,
    )?)
}

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.user.trim().is_empty(), "the user id cannot be empty");
    let authenticator = server_authenticator(args.config.as_deref(), args.data_dir.clone())?;
    println!(
        "{}",
        authenticator.issue(&args.user, args.name.as_deref(), &args.scopes, args.ttl)
    );
    Ok(())
}
