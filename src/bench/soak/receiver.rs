//! The soak's webhook receiver: a minimal HTTP/1.1 endpoint on loopback that the server's
//! webhook sink POSTs `message.new` notifications to. It checks each request's HMAC signature,
//! answers 503 to a random fraction of requests (so the sink retries, and now and then gives up
//! into `message.new.dlq`), 200 to the others, and counts what it saw.
//!
//! It speaks just enough HTTP for one client it knows (the sink's reqwest client: keep-alive,
//! `Content-Length` bodies); it is not a general server, and it keeps axum out of the bench.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::random::random_chance;
use crate::notify::webhook::signature;

/// Largest header block or body the receiver reads (a notification is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// What the receiver counted.
#[derive(Default)]
pub(crate) struct Inbox {
    /// Requests read.
    pub(crate) received: AtomicU64,
    /// Answered 200.
    pub(crate) accepted: AtomicU64,
    /// Answered 503 on purpose.
    pub(crate) refused: AtomicU64,
    /// Requests whose signature did not match.
    pub(crate) bad_signatures: AtomicU64,
    /// Hashes of the (messageId, recipientId) pairs answered 200.
    delivered: Mutex<HashSet<u64>>,
}

/// The receiver's counts in the report.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InboxCounts {
    /// Requests read.
    pub(crate) received: u64,
    /// Answered 200.
    pub(crate) accepted: u64,
    /// Answered 503 on purpose.
    pub(crate) refused: u64,
    /// Requests whose HMAC signature did not match.
    pub(crate) bad_signatures: u64,
    /// Distinct notifications (message, recipient) answered 200.
    pub(crate) distinct_delivered: u64,
}

impl Inbox {
    /// The counts so far.
    pub(crate) fn counts(&self) -> InboxCounts {
        InboxCounts {
            received: self.received.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bad_signatures: self.bad_signatures.load(Ordering::Relaxed),
            distinct_delivered: self.distinct_delivered(),
        }
    }

    /// Distinct notifications answered 200.
    pub(crate) fn distinct_delivered(&self) -> u64 {
        self.delivered.lock().len() as u64
    }

    fn note_delivered(&self, body: &[u8]) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Notification<'a> {
            message_id: &'a str,
            recipient_id: &'a str,
        }
        let Ok(n) = serde_json::from_slice::<Notification>(body) else {
            return;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (n.message_id, n.recipient_id).hash(&mut hasher);
        self.delivered.lock().insert(hasher.finish());
    }
}

/// A running receiver.
pub(crate) struct Receiver {
    /// The URL the sink posts to.
    pub(crate) url: String,
    /// What it counted.
    pub(crate) inbox: Arc<Inbox>,
}

/// Binds 127.0.0.1:0 and serves until `stop`; `refuse` is the fraction answered 503.
pub(crate) async fn start(
    secret: String,
    refuse: f64,
    stop: CancellationToken,
) -> anyhow::Result<Receiver> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the webhook receiver")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let inbox = Arc::new(Inbox::default());
    let shared = Arc::new(Endpoint {
        secret,
        refuse,
        inbox: inbox.clone(),
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let endpoint = shared.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            _ = endpoint.serve(stream) => {}
                        }
                    });
                }
            }
        }
    });
    Ok(Receiver { url, inbox })
}

struct Endpoint {
    secret: String,
    refuse: f64,
    inbox: Arc<Inbox>,
}

/// One request as the receiver needs it.
struct Request {
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Endpoint {
    /// Answers the requests of one keep-alive connection until the client closes it.
    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        while let Some(request) = read_request(&mut reader).await? {
            let status = self.answer(&request);
            let reason = if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            };
            let response = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n");
            write.write_all(response.as_bytes()).await?;
        }
        Ok(())
    }

    fn answer(&self, request: &Request) -> u16 {
        let inbox = &self.inbox;
        inbox.received.fetch_add(1, Ordering::Relaxed);
        let expected = request
            .timestamp
            .parse::<u64>()
            .map(|t| signature(self.secret.as_bytes(), t, &request.body));
        if expected.as_deref() != Ok(request.signature.as_str()) {
            inbox.bad_signatures.fetch_add(1, Ordering::Relaxed);
        }
        if random_chance(self.refuse) {
            inbox.refused.fetch_add(1, Ordering::Relaxed);
            return 503;
        }
        inbox.accepted.fetch_add(1, Ordering::Relaxed);
        inbox.note_delivered(&request.body);
        200
    }
}

/// Reads one request (`None` when the client closed the connection between requests).
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Request>> {
    let mut request = Request {
        timestamp: String::new(),
        signature: String::new(),
        body: Vec::new(),
    };
    let mut length = 0usize;
    let mut header_bytes = 0usize;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await?;
        if n == 0 {
            return if first {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        first = false;
        header_bytes += n;
        if header_bytes > MAX_REQUEST_BYTES {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            continue; // the request line
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "x-tidings-timestamp" => request.timestamp = value.to_owned(),
            "x-tidings-signature" => request.signature = value.to_owned(),
            _ => {}
        }
    }
    if length > MAX_REQUEST_BYTES {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).await?;
    Ok(Some(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_read_one_after_another_on_a_connection() {
        let raw = b"POST /hook HTTP/1.1\r\nContent-Length: 2\r\nX-Tidings-Timestamp: 7\r\n\
                    x-tidings-signature: sha256=ab\r\n\r\n{}POST /hook HTTP/1.1\r\n\
                    content-length: 0\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let first = read_request(&mut reader).await.unwrap().unwrap();
        assert_eq!(first.body, b"{}");
        assert_eq!(first.timestamp, "7");
        assert_eq!(first.signature, "sha256=ab");
        let second = read_request(&mut reader).await.unwrap().unwrap();
        assert!(second.body.is_empty());
        assert!(read_request(&mut reader).await.unwrap().is_none());
    }

    #[test]
    fn a_delivered_notification_counts_once() {
        let inbox = Inbox::default();
        let body = br#"{"messageId":"m1","recipientId":"bob","seq":1}"#;
        inbox.note_delivered(body);
        inbox.note_delivered(body);
        inbox.note_delivered(br#"{"messageId":"m1","recipientId":"carol"}"#);
        assert_eq!(inbox.distinct_delivered(), 2);
    }
}
