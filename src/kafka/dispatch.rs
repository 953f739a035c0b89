//! One request frame in, one response frame (or none, or a closed connection) out: the request
//! header is read, the API key and version are checked against what is served, the body is
//! decoded and handed to its API family's handler, and the answer is encoded with the response
//! header that API and version use.
//!
//! What cannot be answered in Kafka's terms closes the connection, as a Kafka broker does: a
//! frame too short for a header, an unknown API key, an unserved version of any API but
//! ApiVersions (which answers `UNSUPPORTED_VERSION` in a v0 body, KIP-511), a body that does
//! not decode. This module owns no state and reads no socket (see `connection`).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::access::Session;
use super::versions::{api_versions, is_served};
use super::{admin, fetch, groups, list_offsets, metadata, offsets, produce, sasl, Broker};

/// Bytes every request header starts with: API key, API version, correlation id.
const FIXED_HEADER_BYTES: usize = 8;

/// What the connection does after a request.
#[derive(Debug)]
pub(super) enum Reply {
    /// Write this frame (length prefix added by the codec).
    Frame(Bytes),
    /// Write nothing (a Produce with acks = 0).
    Nothing,
    /// Close the connection; the reason is logged.
    Close(String),
}

/// What a handler decided.
#[derive(Debug)]
pub(super) enum Handled {
    /// Answer with this body (boxed: the enum of every answer is large).
    Respond(Box<ResponseKind>),
    /// No answer at all (acks = 0).
    Silent,
}

/// Decodes, handles and encodes one request frame.
pub(super) async fn handle_frame(broker: &Broker, session: &mut Session, frame: Bytes) -> Reply {
    let Some((raw_key, version, correlation_id)) = fixed_header(&frame) else {
        return Reply::Close(format!("a request of {} bytes has no header", frame.len()));
    };
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Reply::Close(format!("unknown API key {raw_key}"));
    };
    if !is_served(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            let answer = ResponseKind::ApiVersions(api_versions(version));
            return encode_reply(api_key, 0, correlation_id, &answer);
        }
        return Reply::Close(format!("{api_key:?} v{version} is not served"));
    }
    let request = match decode_request(api_key, version, frame) {
        Ok(request) => request,
        Err(reason) => return Reply::Close(reason),
    };
    match route(broker, session, request, version).await {
        Handled::Respond(answer) => encode_reply(api_key, version, correlation_id, &answer),
        Handled::Silent => Reply::Nothing,
    }
}

/// API key, version and correlation id, which sit at the same place in every header version.
fn fixed_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let head: &[u8; FIXED_HEADER_BYTES] = frame.get(..FIXED_HEADER_BYTES)?.try_into().ok()?;
    Some((
        i16::from_be_bytes([head[0], head[1]]),
        i16::from_be_bytes([head[2], head[3]]),
        i32::from_be_bytes([head[4], head[5], head[6], head[7]]),
    ))
}

/// The request body, after its header; an error says what did not decode.
pub(super) fn decode_request(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<RequestKind, String> {
    let header_version = api_key.request_header_version(version);
    RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("{api_key:?} v{version}: bad request header: {e}"))?;
    RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("{api_key:?} v{version}: bad request body: {e}"))
}

async fn route(
    broker: &Broker,
    session: &mut Session,
    request: RequestKind,
    version: i16,
) -> Handled {
    let answer = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(version)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, session, r, version).await)
        }
        RequestKind::Produce(r) => return produce::handle(broker, session, r).await,
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, session, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, session, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(broker, session, r).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(broker, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(broker, r).await),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave(broker, r, version).await)
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(broker.producers.init(&r)),
        RequestKind::SaslHandshake(r) => ResponseKind::SaslHandshake(sasl::handshake(session, &r)),
        RequestKind::SaslAuthenticate(r) => {
            ResponseKind::SaslAuthenticate(sasl::authenticate(broker, session, &r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create(broker, session, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete(broker, session, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, session, r))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(broker, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe(broker, r).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offsets::commit(broker, session, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offsets::fetch(broker, session, r, version))
        }
        other => unreachable_request(other),
    };
    Handled::Respond(Box::new(answer))
}

/// `is_served` let through an API with no handler: a programming error in `versions`, caught by
/// its test; answered as unsupported rather than by a panic.
fn unreachable_request(request: RequestKind) -> ResponseKind {
    tracing::error!(?request, "a served API has no handler");
    ResponseKind::ApiVersions(api_versions(i16::MAX))
}

/// The response header (v0 for ApiVersions whatever the version, as clients read it before they
/// know the version) and the body; an encoding failure closes the connection.
fn encode_reply(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    answer: &ResponseKind,
) -> Reply {
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let mut frame = BytesMut::with_capacity(size_hint(answer));
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut frame, header_version)
        .and_then(|()| answer.encode(&mut frame, version));
    match encoded {
        Ok(()) => Reply::Frame(frame.freeze()),
        Err(e) => Reply::Close(format!(
            "{api_key:?} v{version}: cannot encode the answer: {e}"
        )),
    }
}

/// Bytes to reserve for an answer: a Fetch answer is its record batches plus a little per
/// partition, reserved at once so that megabytes of records are not copied again as the buffer
/// doubles; any other answer is small.
fn size_hint(answer: &ResponseKind) -> usize {
    const PER_PARTITION: usize = 64;
    match answer {
        ResponseKind::Fetch(fetch) => fetch
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|p| p.records.as_ref().map_or(0, Bytes::len) + PER_PARTITION)
            .sum::<usize>()
            .saturating_add(1024),
        _ => 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_header_needs_eight_bytes() {
        assert_eq!(fixed_header(&[0, 18, 0, 3, 0, 0, 0]), None);
        assert_eq!(fixed_header(&[0, 18, 0, 3, 0, 0, 0, 7]), Some((18, 3, 7)));
    }
}
