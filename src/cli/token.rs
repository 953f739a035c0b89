//! `tidings token USER`: prints a token signed with the server's secret, so a fresh install can
//! be tried at once (`curl -H "Authorization: Bearer $(tidings token alice)" …`).
//!
//! The secret is found as the server finds it: `auth.jwtSecret` or `auth.jwtSecretFile` from
//! `--config FILE` (or `TIDINGS_JWT_SECRET`), else `DATA_DIR/secret.key`. Unlike the server it
//! never creates one: run away from the server's directory, a new secret would sign tokens the
//! server refuses, so it says which `--data-dir` or `--config` to pass instead. The token
//! carries the claim names, issuer and audience of `[auth]`, so a server that checks them
//! accepts it. It needs no lock on the data directory, so it works while the server runs. The
//! admin commands sign their tokens for a server the same way. With `--link` it prints the web
//! console's sign-in link for the server's address instead (the token in the URL's fragment).

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthError, Authenticator};
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
    /// Print a web-console link `http://HOST:PORT/#token=T` instead of the bare token.
    #[arg(long)]
    pub(crate) link: bool,
}

/// The authenticator that mints tokens a server with this configuration file (or data
/// directory) accepts: its secret (`auth.jwtSecret`, `auth.jwtSecretFile`, else the data
/// directory's `secret.key`) and its claim names, issuer and audience. It never creates a
/// secret: one created now would sign tokens that server refuses, so a missing one is an error
/// that names `--data-dir` and `--config`. Shared by the commands that mint tokens (`token`,
/// the admin commands without `--token`, `bench`).
pub(crate) fn server_authenticator(
    config_file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Authenticator> {
    let config = server_config(config_file, data_dir)?;
    Ok(Authenticator::for_minting(&config.auth, &config.data_dir)?)
}

/// [`server_authenticator`] for the admin commands that ask a running server, whose missing
/// secret can also be made up for with `--token`.
pub(crate) fn running_server_authenticator(
    config_file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Authenticator> {
    let config = server_config(config_file, data_dir)?;
    match Authenticator::for_minting(&config.auth, &config.data_dir) {
        Err(AuthError::NoSecret { path }) => anyhow::bail!(
            "no token for the server: pass --token (or TIDINGS_TOKEN), or the server's \
             --data-dir or --config so that one is signed with its secret ({} does not exist)",
            path.display()
        ),
        minted => Ok(minted?),
    }
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

/// Prints the token on stdout, or with `--link` the web console's sign-in link.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.user.trim().is_empty(), "the user id cannot be empty");
    let config = server_config(args.config.as_deref(), args.data_dir.clone())?;
    let authenticator = Authenticator::for_minting(&config.auth, &config.data_dir)?;
    let token = authenticator.issue(&args.user, args.name.as_deref(), &args.scopes, args.ttl);
    if args.link {
        println!("{}", console_link(&config, &token));
    } else {
        println!("{token}");
    }
    Ok(())
}

/// `http://HOST:PORT/#token=T` (`https` with TLS) for the server of `config`: the running
/// server's own address when its data directory names one (right even for `--listen
/// 127.0.0.1:0`), else the configured listen address (a wildcard one as loopback). The token goes in the fragment,
/// which the browser keeps to itself: it never reaches the server's logs, and the console
/// removes it from the address bar once read. A JWT is URL-safe as it is.
fn console_link(config: &Config, token: &str) -> String {
    let base = crate::discovery::read_address(&config.data_dir)
        .unwrap_or_else(|| crate::discovery::local_url(config.listen, config.tls.enabled()));
    format!("{}/#token={token}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_puts_the_token_in_the_fragment_of_the_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.listen = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(
            console_link(&config, "a.b.c"),
            "http://127.0.0.1:9000/#token=a.b.c"
        );
        crate::discovery::write_address(dir.path(), "127.0.0.1:4321".parse().unwrap(), None)
            .unwrap();
        assert_eq!(
            console_link(&config, "a.b.c"),
            "http://127.0.0.1:4321/#token=a.b.c"
        );
    }
}
