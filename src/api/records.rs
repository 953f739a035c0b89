//! Record routes of the event bus: publish a batch to a topic (or to one of its partitions),
//! read (and long-poll) one partition from an offset.
//!
//! Publishing turns each JSON record into a log [`Record`]: `key` as UTF-8 bytes, `headers` (a
//! JSON object of strings) as log headers, `value` as the exact JSON text the client sent. The
//! whole batch is one [`Log::append`](crate::log::Log::append) and is answered 202 once durable.
//! Reading re-emits a value that is valid JSON as that JSON, and any other bytes (records written
//! by other producers, e.g. `tidings produce`) as a JSON string of their UTF-8 text.
//!
//! Who may do what is decided in [`super::topics::authorize`]. This module does not create
//! topics: publishing to a topic that does not exist is 404, although the log itself would
//! create it.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::auth::Caller;
use super::problem::{ApiError, Json, Query};
use super::topics::{authorize, Action};
use super::{blocking, AppState};
use crate::log::{Header, Log, ReadLimits, Record, StoredRecord};

/// Records a read returns when the request does not say (`limit`).
pub(crate) const DEFAULT_READ_LIMIT: usize = 100;
/// Most records one read returns.
pub(crate) const MAX_READ_LIMIT: usize = 1000;
/// Longest long-poll; a larger `waitMs` is shortened to this.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);
/// Deepest nesting of arrays and objects in a published value. serde_json keeps a published
/// value as raw text without its recursion limit (128), so without this a value no consumer
/// can parse back would be stored; 64 leaves consumers' parsers room to wrap it.
pub(crate) const MAX_VALUE_DEPTH: usize = 64;

/// `POST /api/topics/{name}/records` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    /// The batch, in order; at least one record.
    pub records: Vec<PublishedRecord>,
}

/// One record as a producer sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishedRecord {
    /// Partitioning key; records without one are spread round-robin.
    pub key: Option<String>,
    /// Headers, name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Any JSON value, stored as the JSON text sent.
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
}

impl From<PublishedRecord> for Record {
    fn from(published: PublishedRecord) -> Self {
        Record {
            key: published.key.map(String::into_bytes),
            headers: published
                .headers
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: value.into_bytes(),
                })
                .collect(),
            // The raw JSON text's own allocation becomes the value: no copy.
            value: String::from(Box::<str>::from(published.value)).into_bytes(),
        }
    }
}

/// Where one published record landed.
#[derive(Debug, Serialize)]
pub(crate) struct Position {
    partition: u32,
    offset: u64,
}

/// `POST /api/topics/{name}/records` answer: one position per record, in the batch's order.
#[derive(Debug, Serialize)]
pub(crate) struct Published {
    offsets: Vec<Position>,
}

/// `POST /api/topics/{name}/records` → 202 `{"offsets":[…]}` once the batch is durable.
/// 404 unknown topic, 400 empty batch, 413 too many records or a record over the size limit.
#[utoipa::path(
    post,
    path = "/api/topics/{name}/records",
    tag = "topics",
    params(
        ("name" = String, Path, description = "The topic name"),
    ),
    request_body = PublishBody,
    responses(
        (status = 202, description = "Durable: `{offsets: [{partition, offset}]}`", body = serde_json::Value),
        (status = 413, description = "A record over the limit", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<PublishBody>,
) -> Result<Response, ApiError> {
    append_batch(&state, &caller, &name, None, body).await
}

/// `POST /api/topics/{name}/partitions/{p}/records` → 202 like [`publish`], every record in
/// partition `p` whatever its key (as Kafka's producer does with an explicit partition).
/// 404 unknown topic or partition.
#[utoipa::path(
    post,
    path = "/api/topics/{name}/partitions/{partition}/records",
    tag = "topics",
    params(
        ("name" = String, Path, description = "The topic name"),
        ("partition" = u32, Path, description = "The partition number"),
    ),
    request_body = PublishBody,
    responses(
        (status = 202, description = "Durable: `{offsets: [{partition, offset}]}`", body = serde_json::Value),
        (status = 413, description = "A record over the limit", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn publish_to_partition(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, partition)): Path<(String, String)>,
    Json(body): Json<PublishBody>,
) -> Result<Response, ApiError> {
    let partition = parse_partition(&partition)?;
    append_batch(&state, &caller, &name, Some(partition), body).await
}

/// Checks and appends one batch, to `partition` or (None) by key, else round-robin.
async fn append_batch(
    state: &AppState,
    caller: &Caller,
    name: &str,
    partition: Option<u32>,
    body: PublishBody,
) -> Result<Response, ApiError> {
    authorize(caller, name, Action::Publish)?;
    let limit = state.config().limits.max_batch_records;
    if body.records.is_empty() {
        return Err(ApiError::BadRequest(
            "records: a batch needs at least one record".into(),
        ));
    }
    if body.records.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "records: {} records in one batch; the limit is {limit} (limits.maxBatchRecords)",
            body.records.len()
        )));
    }
    refuse_deep_values(&body.records)?;
    let log = state.log()?;
    // The log creates unknown topics on their first append; over HTTP that is a 404. Every
    // topic has a partition 0, and its watermarks are a lookup in memory (describing the topic
    // read its first and last batches from the engine: ~3 % of a one-record publish).
    log.watermarks(name, partition.unwrap_or(0))?;
    let records = body.records.into_iter().map(Record::from).collect();
    let appended = match partition {
        Some(partition) => log.append_to(name, partition, records).await?,
        None => log.append(name, records).await?,
    };
    let offsets = appended
        .into_iter()
        .map(|a| Position {
            partition: a.partition,
            offset: a.offset,
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(Published { offsets })).into_response())
}

/// 400 naming the first record whose value nests deeper than [`MAX_VALUE_DEPTH`].
fn refuse_deep_values(records: &[PublishedRecord]) -> Result<(), ApiError> {
    for (i, record) in records.iter().enumerate() {
        if exceeds_depth(record.value.get(), MAX_VALUE_DEPTH) {
            return Err(ApiError::BadRequest(format!(
                "records[{i}].value: nested deeper than {MAX_VALUE_DEPTH} levels of arrays \
                 and objects; the limit is {MAX_VALUE_DEPTH}"
            )));
        }
    }
    Ok(())
}

/// True if valid JSON `text` nests arrays and objects deeper than `limit`. One pass, no
/// recursion, stops at the first level too deep; brackets inside strings do not count.
fn exceeds_depth(text: &str, limit: usize) -> bool {
    // A scalar (a string, most records' value) holds no array or object.
    if !text.trim_start().starts_with(['[', '{']) {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `GET …/partitions/{p}/records` query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadQuery {
    /// First offset to read; the low watermark (earliest retained) when absent.
    pub offset: Option<u64>,
    /// Most records, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// How long to wait for a record when there is none yet, in ms (default 0, at most 30 000).
    pub wait_ms: Option<u64>,
}

/// One record as a consumer reads it. A value that is JSON is `value`; any other bytes (a
/// Kafka client's binary or plain-text value) are `valueBase64` instead. A key that is not
/// UTF-8 is `keyBase64` (and `key` is null).
#[derive(Debug, Serialize)]
pub(crate) struct ReadRecord {
    topic: String,
    partition: u32,
    offset: u64,
    key: Option<String>,
    #[serde(rename = "keyBase64", skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Box<RawValue>>,
    #[serde(rename = "valueBase64", skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    timestamp: String,
}

/// `GET …/partitions/{p}/records` answer; `nextOffset` is the offset to ask for next.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadPage {
    records: Vec<ReadRecord>,
    next_offset: u64,
}

/// `GET /api/topics/{name}/partitions/{p}/records?offset=N&limit=M&waitMs=W` → records from
/// N on. With none at N yet, waits up to W ms for one (returning early, empty, when the server
/// shuts down). 416 when N is below the low or above the high watermark.
#[utoipa::path(
    get,
    path = "/api/topics/{name}/partitions/{partition}/records",
    tag = "topics",
    params(
        ("name" = String, Path, description = "The topic name"),
        ("partition" = u32, Path, description = "The partition number"),
        ("offset" = Option<u64>, Query, description = "First offset (default: the low watermark)"),
        ("limit" = Option<u32>, Query, description = "Most records, 1-1000 (default 100)"),
        ("waitMs" = Option<u64>, Query, description = "Long-poll up to this many ms when there is no record yet"),
    ),
    responses(
        (status = 200, description = "`{records, nextOffset}`", body = serde_json::Value),
        (status = 416, description = "The offset is below the retained range", body = crate::api::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, partition)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<ReadPage>, ApiError> {
    authorize(&caller, &name, Action::Read)?;
    let partition = parse_partition(&partition)?;
    let limit = query.limit.unwrap_or(DEFAULT_READ_LIMIT);
    if limit == 0 || limit > MAX_READ_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_READ_LIMIT}, got {limit}"
        )));
    }
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let log = state.log()?.clone();
    let offset = match query.offset {
        // On a shared log, records read through another node may not be in this node's copy
        // yet: an offset past it is waited for before it is out of range.
        Some(offset) => log
            .watermarks_reaching(&name, partition, offset)
            .await
            .map(|_| offset)?,
        None => log.watermarks(&name, partition)?.0,
    };
    let mut records = read_blocking(&log, &name, partition, offset, limit).await?;
    if records.is_empty() && !wait.is_zero() {
        let arrived = tokio::select! {
            waited = log.wait_for(&name, partition, offset, wait) => waited?,
            () = state.shutdown().cancelled() => false,
        };
        if arrived {
            records = read_blocking(&log, &name, partition, offset, limit).await?;
        }
    }
    let next_offset = records.last().map_or(offset, |r| r.offset + 1);
    let records = records
        .into_iter()
        .map(|r| read_record(&name, r))
        .collect::<Result<_, _>>()?;
    Ok(Json(ReadPage {
        records,
        next_offset,
    }))
}

fn parse_partition(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "partition must be a partition number (0, 1, …), got {text:?}"
        ))
    })
}

/// Reads off the async threads: a read may touch the disk.
pub(super) async fn read_blocking(
    log: &Log,
    topic: &str,
    partition: u32,
    offset: u64,
    limit: usize,
) -> Result<Vec<StoredRecord>, ApiError> {
    let (log, topic) = (log.clone(), topic.to_owned());
    blocking(move || {
        let limits = ReadLimits {
            max_records: limit,
            ..ReadLimits::default()
        };
        Ok(log.read(&topic, partition, offset, limits)?)
    })
    .await
}

/// A stored record in the JSON shape every read route answers with.
pub(super) fn read_record(topic: &str, record: StoredRecord) -> Result<ReadRecord, ApiError> {
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let (key, key_base64) = match record.key.map(String::from_utf8) {
        None => (None, None),
        Some(Ok(key)) => (Some(key), None),
        Some(Err(e)) => (None, Some(BASE64.encode(e.into_bytes()))),
    };
    let (value, value_base64) = match serde_json::from_slice::<Box<RawValue>>(&record.value) {
        Ok(json) => (Some(json), None),
        Err(_) => (None, Some(BASE64.encode(&record.value))),
    };
    Ok(ReadRecord {
        topic: topic.to_owned(),
        partition: record.partition,
        offset: record.offset,
        key,
        key_base64,
        headers: record
            .headers
            .into_iter()
            .map(|h| (h.key, text(h.value)))
            .collect(),
        value,
        value_base64,
        timestamp: rfc3339(record.timestamp_ms),
    })
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds (clamped at the epoch).
fn rfc3339(timestamp_ms: i64) -> String {
    let ms = u64::try_from(timestamp_ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(key: Option<&[u8]>, value: &[u8]) -> StoredRecord {
        StoredRecord {
            partition: 0,
            offset: 7,
            timestamp_ms: 0,
            key: key.map(<[u8]>::to_vec),
            headers: Vec::new(),
            value: value.to_vec(),
        }
    }

    /// JSON values are re-emitted as they are; any other bytes, and keys that are not UTF-8,
    /// are base64 (nothing is read lossily).
    #[test]
    fn values_are_json_or_base64_and_keys_text_or_base64() {
        let json =
            |record: StoredRecord| serde_json::to_value(read_record("t", record).unwrap()).unwrap();
        let read = json(stored(Some(b"k"), br#"{"a": [1, 2]}"#));
        assert_eq!(read["value"], serde_json::json!({"a": [1, 2]}));
        assert_eq!(read["key"], "k");
        assert!(read.get("valueBase64").is_none() && read.get("keyBase64").is_none());

        let read = json(stored(Some(&[0xff, 0x00]), b"not json"));
        assert!(read.get("value").is_none(), "{read}");
        assert_eq!(read["valueBase64"], "bm90IGpzb24=");
        assert_eq!(read["key"], serde_json::Value::Null);
        assert_eq!(read["keyBase64"], "/wA=");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn raw_values_keep_the_published_json_text() {
        let body: PublishBody =
            serde_json::from_str(r#"{"records":[{"key":"k","value":{"n":1.50}}]}"#).unwrap();
        let record = Record::from(body.records.into_iter().next().unwrap());
        assert_eq!(record.value, br#"{"n":1.50}"#);
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    }

    /// serde_json's own view of the nesting depth of `text` (within its recursion limit): the
    /// reference the scanner is checked against.
    fn depth_by_serde(text: &str) -> usize {
        fn depth(value: &serde_json::Value) -> usize {
            match value {
                serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
                serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        depth(&serde_json::from_str(text).unwrap())
    }

    /// Valid JSON of random shape, with brackets and escapes inside strings.
    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[\\[\\]{}\"\\\\a-z]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(80, 400, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[\\[{\"a-z]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The scanner agrees with serde_json on every value, at every limit around its depth.
        #[test]
        fn the_depth_scanner_agrees_with_serde(value in json()) {
            let text = serde_json::to_string(&value).unwrap();
            let depth = depth_by_serde(&text);
            proptest::prop_assert!(!exceeds_depth(&text, depth));
            if depth > 0 {
                proptest::prop_assert!(exceeds_depth(&text, depth - 1));
            }
        }
    }

    #[test]
    fn a_value_100_000_levels_deep_is_refused_naming_the_limit() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#"{{"records":[{{"value":1}},{{"value":{deep}}}]}}"#);
        let body: PublishBody = serde_json::from_str(&text).unwrap();
        let refused = refuse_deep_values(&body.records).unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.detail().contains("records[1].value"), "{refused}");
        assert!(refused.detail().contains("the limit is 64"), "{refused}");
        let at_limit = format!(
            "{}{}",
            "{\"a\":".repeat(64),
            "1".to_owned() + &"}".repeat(64)
        );
        assert!(!exceeds_depth(&at_limit, MAX_VALUE_DEPTH));
        let over = format!("[{at_limit}]");
        assert!(exceeds_depth(&over, MAX_VALUE_DEPTH));
        assert!(!exceeds_depth(r#""[[[[[[[[[[\"[[[[""#, 1));
    }

    /// The server's retention runs every 30 s; this drives the router in process instead, so
    /// retention can be applied at once.
    #[tokio::test]
    async fn an_offset_below_the_low_watermark_is_416_over_http() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        use crate::auth::Authenticator;
        use crate::config::Config;
        use crate::log::{LogConfig, TopicConfig};

        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(LogConfig::new(dir.path())).unwrap();
        let mut config = TopicConfig::with_partitions(1);
        config.retention_bytes = Some(2_000);
        log.create_topic("t", config).await.unwrap();
        for i in 0..50u8 {
            log.append("t", vec![Record::new(vec![b'1' + i % 9; 100])])
                .await
                .unwrap();
        }
        log.enforce_retention().await.unwrap();
        let (low, _) = log.watermarks("t", 0).unwrap();
        assert!(low > 0);
        let state = AppState::new(Config::default());
        let auth = Authenticator::new(&[7; 32]).unwrap();
        let token = auth.issue(
            "svc",
            None,
            &["events:consume".into()],
            Duration::from_secs(60),
        );
        state.attach_authenticator(auth);
        state.attach_log(log);
        let get = |offset: u64| {
            Request::get(format!(
                "/api/topics/t/partitions/0/records?offset={offset}"
            ))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
        };
        let below = super::super::app(state.clone())
            .oneshot(get(low - 1))
            .await
            .unwrap();
        assert_eq!(below.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        let at_low = super::super::app(state).oneshot(get(low)).await.unwrap();
        assert_eq!(at_low.status(), StatusCode::OK);
    }
}
