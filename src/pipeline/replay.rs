//! Dead-letter replay on the log: re-publishes the records of a dead-letter topic to the topic
//! they came from, each addressed to the sink that failed it. `tidings dlq replay` runs it on a
//! data directory it opened; `POST /api/dlq/replay` runs it inside the server; the command's
//! HTTP mode applies the same rules ([`ReplayPlan::replay_to`], [`belongs_to`]) to polled
//! records.
//!
//! A dead-letter topic is named after the topic its records came from (`message.new.dlq` holds
//! dead letters of `message.new`), and replay sends them there and nowhere else: the target is
//! the topic's name without `.dlq`, never something a record says. A dead letter (see
//! [`super::sinks`]) keeps its record's key and value and names its source in the header
//! `tidings-dlq-topic`; one whose header names another topic was not written by the sink of
//! that topic, so it is skipped and counted, not replayed. Each replayed record has the same
//! key and value and no `tidings-dlq-*` headers. The replay commits its own consumer group
//! (default `dlq-replay`, or `dlq-replay.NAME` for one sink) after each batch, so a second
//! replay repeats nothing, and reads up to the end of the topic as it was when it started.
//!
//! A replayed dead letter carries the failing sink in `tidings-replay-sink`, and only that sink
//! delivers it; with a sink named, only the dead letters that sink failed are replayed. One
//! without a sink header (not written by a sink) goes back to every sink, as it came.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sinks::{DLQ_SINK_HEADER, DLQ_TOPIC_HEADER, REPLAY_SINK_HEADER};
use crate::log::{Log, LogError, ReadLimits, Record, StoredRecord};

/// Prefix of the headers a dead letter gets; replay drops them.
const DLQ_HEADER_PREFIX: &str = "tidings-dlq-";
/// Most dead letters read (and re-published) at once.
const BATCH: usize = 500;

/// Why a replay was not started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    /// The topic is not named `SOURCE.dlq`.
    #[error(
        "{0:?} is not a dead-letter topic: those are named SOURCE.dlq, and their records go \
         back to SOURCE"
    )]
    NotDeadLetters(String),
    /// The log refused a read, an append or a commit.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What to replay: a dead-letter topic, the group that remembers how far replays got, and the
/// one sink whose dead letters to replay (all when `None`).
#[derive(Debug, Clone)]
pub(crate) struct ReplayPlan {
    topic: String,
    source: String,
    group: String,
    sink: Option<String>,
}

/// What a replay does with one dead letter of the right topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Re-publish it, addressed to this sink (None: every sink).
    To(Option<String>),
    /// Leave it: the plan names another sink than the one that failed it.
    OtherSink,
}

impl ReplayPlan {
    /// A plan for `topic` (`SOURCE.dlq`); `group` defaults to `dlq-replay`, or
    /// `dlq-replay.SINK` when one sink is named.
    pub(crate) fn new(
        topic: &str,
        group: Option<String>,
        sink: Option<String>,
    ) -> Result<ReplayPlan, ReplayError> {
        let source = match topic.strip_suffix(".dlq") {
            Some(source) if !source.is_empty() => source.to_owned(),
            _ => return Err(ReplayError::NotDeadLetters(topic.to_owned())),
        };
        let group = group.unwrap_or_else(|| match &sink {
            Some(sink) => format!("dlq-replay.{sink}"),
            None => "dlq-replay".into(),
        });
        crate::log::validate_group_name(&group)?;
        Ok(ReplayPlan {
            topic: topic.to_owned(),
            source,
            group,
            sink,
        })
    }

    /// The dead-letter topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic its records go back to.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The consumer group of the replay.
    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// The one sink the plan replays to, if it names one.
    pub(crate) fn sink(&self) -> Option<&str> {
        self.sink.as_deref()
    }

    /// A report of nothing done yet.
    pub(crate) fn report(&self) -> ReplayReport {
        ReplayReport {
            topic: self.topic.clone(),
            group: self.group.clone(),
            ..ReplayReport::default()
        }
    }

    /// What becomes of a dead letter its sink header says `failed_by` failed: replayed to that
    /// sink only (or, without the header, to every sink), unless the plan names another sink.
    pub(crate) fn replay_to(&self, failed_by: Option<&str>) -> Replay {
        match (&self.sink, failed_by) {
            (Some(wanted), Some(failed)) if wanted == failed => Replay::To(Some(failed.into())),
            (Some(_), _) => Replay::OtherSink,
            (None, failed) => Replay::To(failed.map(str::to_owned)),
        }
    }
}

/// What a replay did (the answer of `POST /api/dlq/replay`, read back by `tidings dlq replay`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplayReport {
    /// The dead-letter topic.
    pub(crate) topic: String,
    /// The consumer group.
    pub(crate) group: String,
    /// Dead letters re-published.
    pub(crate) replayed: u64,
    /// Dead letters not replayed: their header names another source topic.
    pub(crate) skipped: u64,
    /// Dead letters not replayed: the plan names another sink than the one that failed them.
    pub(crate) other_sinks: u64,
    /// Re-published records per target topic.
    pub(crate) to: BTreeMap<String, u64>,
}

impl ReplayReport {
    /// Counts `n` records re-published to `source`.
    pub(crate) fn replayed_to(&mut self, source: &str, n: u64) {
        self.replayed += n;
        *self.to.entry(source.to_owned()).or_default() += n;
    }
}

/// Whether a dead letter belongs back in `source`: its `tidings-dlq-topic` header, when it has
/// one, must name that topic.
pub(crate) fn belongs_to(source: &str, header: Option<&str>) -> bool {
    header.is_none_or(|named| named == source)
}

/// Whether a header is one a dead letter got (and a replayed record loses).
fn is_dlq_header(name: &str) -> bool {
    name.starts_with(DLQ_HEADER_PREFIX) || name == REPLAY_SINK_HEADER
}

/// Each partition of the dead-letter topic: (partition, where the group resumes, the high
/// watermark now). A replay goes up to those watermarks and no further.
pub(crate) fn ranges(log: &Log, plan: &ReplayPlan) -> Result<Vec<(u32, u64, u64)>, LogError> {
    Ok(log
        .group_lag(&plan.group, &plan.topic)?
        .iter()
        .map(|p| (p.partition, p.committed.unwrap_or(p.low).max(p.low), p.high))
        .collect())
}

/// Replays `plan` on `log` over `ranges` (see [`ranges`]), calling `read` with each dead letter
/// it looked at, and syncs the log at the end.
pub(crate) async fn replay(
    log: &Log,
    plan: &ReplayPlan,
    ranges: Vec<(u32, u64, u64)>,
    read: impl Fn(),
) -> Result<ReplayReport, ReplayError> {
    let mut report = plan.report();
    for (partition, mut offset, high) in ranges {
        while offset < high {
            let records = log.read(&plan.topic, partition, offset, ReadLimits::records(BATCH))?;
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            let mut replayed = Vec::new();
            for record in records.iter().filter(|r| r.offset < high) {
                read();
                if !belongs_to(&plan.source, header(record, DLQ_TOPIC_HEADER)) {
                    report.skipped += 1;
                    continue;
                }
                match plan.replay_to(header(record, DLQ_SINK_HEADER)) {
                    Replay::To(sink) => replayed.push(restored(record, sink.as_deref())),
                    Replay::OtherSink => report.other_sinks += 1,
                }
            }
            if !replayed.is_empty() {
                let n = replayed.len() as u64;
                log.append(&plan.source, replayed).await?;
                report.replayed_to(&plan.source, n);
            }
            offset = (last + 1).min(high);
            log.commit_offset(&plan.group, &plan.topic, partition, offset)?;
        }
    }
    log.sync().await?;
    Ok(report)
}

fn header<'a>(record: &'a StoredRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// The record as it was before it failed (same key and value, no dead-letter headers),
/// addressed to `sink` when given.
fn restored(record: &StoredRecord, sink: Option<&str>) -> Record {
    let restored = Record {
        key: record.key.clone(),
        headers: record
            .headers
            .iter()
            .filter(|h| !is_dlq_header(&h.key))
            .cloned()
            .collect(),
        value: record.value.clone(),
    };
    match sink {
        Some(sink) => restored.with_header(REPLAY_SINK_HEADER, sink),
        None => restored,
    }
}
