//! `tidings token USER`: prints a token signed with the server's secret, so a fresh install can
//! be tried at once (`curl -H "Authorization: Bearer $(tidings token alice)" …`).
//!
//! The secret is found as the server finds it: `auth.jwtSecret` from `--config FILE` (or
//! `TIDINGS_JWT_SECRET`), else `DATA_DIR/secret.key`, created if missing. It needs no lock on
//! the data directory, so it works while the server runs. The admin commands sign their tokens
//! for a server the same way (`running_server_authenticator`), but never create a secret.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{Authenticator, SECRET_FILE};
use crate::config::{Config, Overrides};

/// Options of `tidings token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The user id the token speaks for (its `sub`).
    pub(crate) user: String,
    /// Display name (`name` claim).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A scope to grant (repeatable): events:publish, events:consume, admin.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub(crate) scopes: Vec<String>,
    /// How long the token is valid, e.g. 30m, 24h, 7days.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub(crate) ttl: Duration,
    /// The data directory whose secret.key signs the token [default: ./data].
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The server's configuration file (its auth.jwtSecret or dataDir decides the secret).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// The authenticator a server with this configuration file (or data directory) uses: its
/// `auth.jwtSecret`, else its data directory's `secret.key` (created if missing). Shared by the
/// commands that mint tokens (`token`, `bench send`).
pub(crate) fn server_authenticator(
    config_file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Authenticator> {
    authenticator_of(&server_config(config_file, data_dir)?)
}

/// [`server_authenticator`] for a server that already runs, so it never creates a secret: one
/// created now could not sign anything that server accepts. Used by the admin commands that ask
/// a server without `--token`.
pub(crate) fn running_server_authenticator(
    config_file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Authenticator> {
    let config = server_config(config_file, data_dir)?;
    if config.auth.jwt_secret.is_none() {
        let secret = config.data_dir.join(SECRET_FILE);
        anyhow::ensure!(
            secret.exists(),
            "no token for the server: pass --token (or TIDINGS_TOKEN), or the server's \
             --data-dir or --config so that one is signed with its secret ({} does not exist)",
            secret.display()
        );
    }
    authenticator_of(&config)
}

fn authenticator_of(config: &Config) -> anyhow::Result<Authenticator> {
    Ok(Authenticator::from_config(
        config.auth.jwt_secret.as_deref(),
        &config.data_dir,
    )?)
}

fn server_config(
    config_file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir,
        ..Overrides::default()
    };
    Ok(Config::load(config_file, overrides)?)
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
