//! HTTPS and WSS on the listener (`--tls-cert`, `--tls-key`), with a self-signed certificate:
//! real clients (curl, a rustls WebSocket client) talk to the binary, a renewed certificate is
//! served without a restart, the admin commands find the server through its data directory,
//! and files the server cannot use stop it before it listens.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use common::chat::authenticator;
use common::server::{command, start, Process};

/// A certificate for `localhost` and `127.0.0.1` written to `dir`; its DER.
fn write_certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    write_certificate_as(dir, rcgen::IsCa::NoCa)
}

/// [`write_certificate`], saying whether it is an authority (as `openssl req -x509` makes
/// self-signed certificates by default).
fn write_certificate_as(dir: &Path, is_ca: rcgen::IsCa) -> (PathBuf, PathBuf, Vec<u8>) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut params = rcgen::CertificateParams::new(names).expect("certificate names");
    params.is_ca = is_ca;
    let key_pair = rcgen::KeyPair::generate().expect("a key pair");
    let generated = params
        .self_signed(&key_pair)
        .expect("self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.pem()).expect("write cert");
    std::fs::write(&key, key_pair.serialize_pem()).expect("write key");
    (cert, key, generated.der().to_vec())
}

/// The binary on `data` with TLS from `cert` and `key`.
fn serve_tls(data: &Path, cert: &Path, key: &Path) -> Process {
    let cert = cert.to_str().expect("utf-8 path");
    let key = key.to_str().expect("utf-8 path");
    let flags = [
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "never",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    start(command(data, &flags))
}

/// `curl` trusting `cert` only, with extra arguments; its output.
fn curl(cert: &Path, args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(cert)
        .args(args)
        .output()
        .expect("curl is installed")
}

/// `POST url` with a JSON `body` as the holder of `token`, by curl: the status and the answer.
fn curl_post(cert: &Path, token: &str, url: &str, body: &str) -> (u16, Value) {
    let bearer = format!("Authorization: Bearer {token}");
    let json = "Content-Type: application/json";
    let args = [
        "--header",
        &bearer,
        "--header",
        json,
        "--data",
        body,
        "--write-out",
        "\n%{http_code}",
        url,
    ];
    let output = curl(cert, &args);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (answer, status) = text.rsplit_once('\n').expect("curl wrote the status last");
    let status = status.parse().expect("an HTTP status");
    (status, serde_json::from_str(answer).unwrap_or(Value::Null))
}

/// Waits until `GET /readyz` answers 200 over HTTPS (curl checks the certificate).
fn wait_ready(base: &str, cert: &Path) {
    let deadline = Instant::now() + common::server::STARTUP;
    loop {
        let url = format!("{base}/readyz");
        let output = curl(
            cert,
            &["--output", "/dev/null", "--write-out", "%{http_code}", &url],
        );
        if output.stdout == b"200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready over HTTPS: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port(base: &str) -> u16 {
    base.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the base URL")
}

/// A TLS connection to the server, trusting `trusted` only; `None` if the handshake fails.
// ring, as the server uses it (rustls deprecates it for lacking post-quantum key exchange).
#[allow(deprecated)]
async fn tls_connect(port: u16, trusted: &[u8]) -> Option<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(trusted.to_vec())).ok()?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()
}

/// The certificate the server presents to a new connection, if `trusted` verifies it.
async fn presented(port: u16, trusted: &[u8]) -> Option<Vec<u8>> {
    let stream = tls_connect(port, trusted).await?;
    let (_, connection) = stream.get_ref();
    Some(connection.peer_certificates()?.first()?.to_vec())
}

#[tokio::test]
async fn https_and_wss_work_with_real_clients_on_a_self_signed_certificate() {
    let data = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der) = write_certificate(certs.path());
    let server = serve_tls(data.path(), &cert, &key);
    let base = server.base.clone();
    assert!(base.starts_with("https://127.0.0.1:"), "start line: {base}");
    wait_ready(&base, &cert);

    let auth = authenticator(data.path());
    let alice = auth.issue("alice", None, &[], Duration::from_secs(600));

    // A WebSocket over TLS: the session is ready, then gets the message sent over HTTPS.
    let tls = tls_connect(port(&base), &der)
        .await
        .expect("TLS handshake with the server's certificate");
    let url = format!("wss://localhost:{}/ws?token={alice}", port(&base));
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket upgrade over TLS");
    let ready = next_json(&mut socket).await;
    assert_eq!(ready["type"], "ready", "{ready}");

    let (status, created) = curl_post(
        &cert,
        &alice,
        &format!("{base}/api/conversations"),
        r#"{"id":"tls-room","participants":["bob"]}"#,
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "tls-room", "{created}");
    let url = format!("{base}/api/conversations/tls-room/messages");
    let (status, sent) = curl_post(&cert, &alice, &url, r#"{"content":"over TLS"}"#);
    assert_eq!(status, 202, "send over HTTPS: {sent}");
    loop {
        let frame = next_json(&mut socket).await;
        if frame["type"] == "message" {
            assert_eq!(frame["message"]["content"], "over TLS", "{frame}");
            break;
        }
    }

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "5",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{}/healthz", port(&base)))
        .output()
        .expect("curl");
    assert_eq!(
        plain.stdout, b"000",
        "no plaintext answer on the TLS listener"
    );
}

async fn next_json<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout(deadline, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Ok(text) = message.to_text() {
            if !text.is_empty() {
                return serde_json::from_str(text).expect("a JSON frame");
            }
        }
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, first) = write_certificate(certs.path());
    let server = serve_tls(data.path(), &cert, &key);
    wait_ready(&server.base, &cert);
    let port = port(&server.base);
    assert_eq!(presented(port, &first).await.as_deref(), Some(&first[..]));

    // Renewal: a new key pair written over the same files.
    let (_, _, renewed) = write_certificate(certs.path());
    let deadline = Instant::now() + Duration::from_secs(15);
    while presented(port, &renewed).await.as_deref() != Some(&renewed[..]) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_ready(&server.base, &cert);
}

#[test]
fn admin_commands_find_a_tls_server_through_its_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    // An authority's certificate used as the server's own: chain checking refuses it, the
    // pinning of the address file's certificate does not.
    let constraints = rcgen::BasicConstraints::Unconstrained;
    let (cert, key, _) = write_certificate_as(certs.path(), rcgen::IsCa::Ca(constraints));
    let server = serve_tls(data.path(), &cert, &key);
    wait_ready(&server.base, &cert);

    let dir = data.path().to_str().unwrap();
    let args = ["topics", "list", "--data-dir", dir, "--json"];
    let output = common::cli::command(&args).output().expect("run tidings");
    let stdout = common::cli::success(output, &args);
    assert!(
        stdout.contains("messages"),
        "the chat's topics listed: {stdout}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_stops_the_server_before_it_listens() {
    let data = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let (cert, _, _) = write_certificate(first.path());
    let (_, other_key, _) = write_certificate(second.path());
    let output = command(
        data.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            other_key.to_str().unwrap(),
        ],
    )
    .output()
    .expect("run tidings serve");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("listening on"),
        "it must not listen: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot use the certificate") && stderr.contains("key.pem"),
        "{stderr}"
    );
}
