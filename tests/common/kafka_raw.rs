//! A raw Kafka connection (the `kafka-protocol` codecs), for what real clients do not do at a
//! chosen moment: a token that expires on an open connection, a length prefix claiming
//! gigabytes, a retry after a restart, a group coordinator looked up before the clients.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every read has this deadline, so an answer that never comes fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A raw Kafka connection: one request at a time.
pub struct RawKafka {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawKafka {
    pub async fn connect(broker: &str) -> RawKafka {
        let stream = TcpStream::connect(broker).await.expect("connect");
        RawKafka {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends `body` as `api_key` v`version` and decodes the answer's body.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        self.send(api_key, version, body).await;
        let mut frame = self.read_frame().await.expect("an answer");
        let header_version = api_key.response_header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).expect("header");
        assert_eq!(header.correlation_id, self.correlation_id);
        Resp::decode(&mut frame, version).expect("body")
    }

    pub async fn send(&mut self, api_key: ApiKey, version: i16, body: &impl Encodable) {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")))
            .encode(&mut buf, api_key.request_header_version(version))
            .expect("encode the header");
        body.encode(&mut buf, version).expect("encode the body");
        let len = u32::try_from(buf.len()).expect("small");
        self.write(&len.to_be_bytes()).await;
        self.write(&buf).await;
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let mut prefix = [0u8; 4];
            self.stream.read_exact(&mut prefix).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(Bytes::from(body))
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("an answer or a close within the deadline")
    }

    /// SaslHandshake v1 PLAIN then SaslAuthenticate v2 with `token` as the password.
    pub async fn authenticate(&mut self, token: &str) -> SaslAuthenticateResponse {
        let handshake: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            )
            .await;
        assert_eq!(handshake.error_code, 0);
        let auth_bytes = Bytes::from(format!("\0svc\0{token}"));
        self.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(auth_bytes),
        )
        .await
    }

    /// FindCoordinator v3 for `group`: the broker's (node id, port), or the error code.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<(i32, i32), i16> {
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_owned()));
        let answer: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 3, &request).await;
        match answer.error_code {
            0 => Ok((answer.node_id.0, answer.port)),
            code => Err(code),
        }
    }

    /// A Metadata v9 request for all topics.
    pub async fn metadata(&mut self) -> MetadataResponse {
        self.call(ApiKey::Metadata, 9, &MetadataRequest::default())
            .await
    }
}
