//! How the admin command line finds the server that holds a data directory: the address file
//! `DATA_DIR/server.url`.
//!
//! The server writes the file (a line `http://HOST:PORT`, or `https://HOST:PORT` and a second
//! line `cert PATH` naming its certificate file when it speaks TLS) once it holds the directory's lock,
//! and removes it when it stops cleanly, before it lets the lock go. A command run without
//! `--server` that finds the directory locked reads it and asks that server over HTTP instead.
//! After a crash the file stays behind, but the lock does not, so a stale file is only ever read
//! while some other process holds the directory; the command then fails to connect and says so.
//!
//! This module owns the file's name, format and atomic replacement. It does not decide when to
//! write or read it (`server.rs` and `cli::connect` do) and knows nothing of HTTP.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The address file's name inside the data directory.
pub(crate) const ADDRESS_FILE: &str = "server.url";

/// Where a data directory's address file is.
pub(crate) fn address_file(data_dir: &Path) -> PathBuf {
    data_dir.join(ADDRESS_FILE)
}

/// The line that names the certificate of a TLS server.
const CERT_PREFIX: &str = "cert ";

/// The URL a local client reaches a server listening on `addr` at: an unspecified address
/// (`0.0.0.0`, `::`) listens on every interface, so the loopback one of its family is used.
/// `tls` picks `https`.
pub(crate) fn local_url(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Writes the address file for a server listening on `addr`, with TLS when `cert` names its
/// certificate file (made absolute: the command may run from another directory). Written to a
/// temporary name and renamed, so a reader never sees half a line.
pub(crate) fn write_address(
    data_dir: &Path,
    addr: SocketAddr,
    cert: Option<&Path>,
) -> std::io::Result<()> {
    let path = address_file(data_dir);
    let temporary = data_dir.join(format!("{ADDRESS_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    writeln!(file, "{}", local_url(addr, cert.is_some()))?;
    if let Some(cert) = cert {
        writeln!(
            file,
            "{CERT_PREFIX}{}",
            std::path::absolute(cert)?.display()
        )?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, &path)
}

/// Removes the address file; a missing one is fine (nothing to remove).
pub(crate) fn remove_address(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(address_file(data_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The URL in the address file, if there is one with an `http://` or `https://` URL in it.
pub(crate) fn read_address(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(address_file(data_dir)).ok()?;
    let url = text.lines().next()?.trim();
    let is_url = url.starts_with("http://") || url.starts_with("https://");
    is_url.then(|| url.to_owned())
}

/// The certificate file a TLS server named in the address file, if it did.
pub(crate) fn read_certificate(data_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(address_file(data_dir)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(CERT_PREFIX))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_round_trips_and_unspecified_hosts_become_loopback() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_address(dir.path()), None);
        write_address(dir.path(), "0.0.0.0:8787".parse().unwrap(), None).unwrap();
        assert_eq!(
            read_address(dir.path()).as_deref(),
            Some("http://127.0.0.1:8787")
        );
        write_address(dir.path(), "[::]:9000".parse().unwrap(), None).unwrap();
        assert_eq!(
            read_address(dir.path()).as_deref(),
            Some("http://[::1]:9000")
        );
        assert_eq!(read_certificate(dir.path()), None);
        let cert = dir.path().join("cert.pem");
        write_address(dir.path(), "127.0.0.1:8443".parse().unwrap(), Some(&cert)).unwrap();
        assert_eq!(
            read_address(dir.path()).as_deref(),
            Some("https://127.0.0.1:8443")
        );
        assert_eq!(read_certificate(dir.path()), Some(cert));
        remove_address(dir.path()).unwrap();
        remove_address(dir.path()).unwrap();
        assert_eq!(read_address(dir.path()), None);
    }

    #[test]
    fn a_file_without_a_url_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(address_file(dir.path()), "garbage\n").unwrap();
        assert_eq!(read_address(dir.path()), None);
    }
}
