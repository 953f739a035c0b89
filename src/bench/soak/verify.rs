//! The soak's final accounting, against a freshly restarted server: every conversation's history
//! read in full over HTTP (`GET …/messages?after=`), its `seq` dense from 1, and every
//! acknowledged message in it exactly once; and the notification topics' sizes, to set what the
//! webhook received against what the server produced and dead-lettered.
//!
//! It only reads, through the public API, as any client would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::chat::World;

/// Conversations read at once.
const CONCURRENT_READS: usize = 4;
/// Messages per history page (the API's largest).
const PAGE: usize = 200;
/// How long the store may take after a restart to hold every acknowledged message.
const CATCH_UP: Duration = Duration::from_secs(120);

/// What the history check found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryCheck {
    /// Messages acknowledged with a 202.
    pub(crate) acked: u64,
    /// Acknowledged messages found in history.
    pub(crate) found: u64,
    /// Acknowledged messages not in history (must be 0).
    pub(crate) lost: u64,
    /// Acknowledged messages in history more than once (must be 0).
    pub(crate) duplicated: u64,
    /// Places where a history's `seq` is not the previous one + 1 (must be 0).
    pub(crate) seq_gaps: u64,
    /// Messages in history that were never acknowledged (sends in flight at a kill, or whose
    /// 202 did not arrive): allowed.
    pub(crate) unacknowledged_stored: u64,
    /// Messages read in all.
    pub(crate) history_messages: u64,
}

impl HistoryCheck {
    fn add(&mut self, other: HistoryCheck) {
        self.acked += other.acked;
        self.found += other.found;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.seq_gaps += other.seq_gaps;
        self.unacknowledged_stored += other.unacknowledged_stored;
        self.history_messages += other.history_messages;
    }
}

/// Checks every conversation's history against the acknowledged ids (`acked[c]`).
pub(crate) async fn check_history(
    client: &reqwest::Client,
    base: &str,
    world: &World,
    acked: Vec<Vec<u128>>,
) -> anyhow::Result<HistoryCheck> {
    let deadline = Instant::now() + CATCH_UP;
    let checks = stream::iter(acked.into_iter().enumerate())
        .map(|(c, ids)| check_conversation(client, base, world, c, ids, deadline))
        .buffer_unordered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await;
    let mut total = HistoryCheck::default();
    for check in checks {
        total.add(check?);
    }
    Ok(total)
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Stored>,
    #[serde(rename = "hasMore")]
    has_more: bool,
}

#[derive(Deserialize)]
struct Stored {
    id: String,
    seq: u64,
}

async fn check_conversation(
    client: &reqwest::Client,
    base: &str,
    world: &World,
    c: usize,
    acked: Vec<u128>,
    deadline: Instant,
) -> anyhow::Result<HistoryCheck> {
    let url = format!("{base}/api/conversations/{}", world.conversations[c]);
    let token = &world.tokens[world.members[c][0]];
    wait_stored(client, &url, token, acked.len() as u64, deadline).await?;
    let history = read_history(client, &url, token).await?;
    Ok(compare(&acked, &history))
}

/// Waits until the conversation's `lastSeq` covers the acknowledged count (the store applies
/// what the log recovered a moment after a restart), or the deadline passes.
async fn wait_stored(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    acked: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let conversation: serde_json::Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let last_seq = conversation["lastSeq"].as_u64().unwrap_or(0);
        if last_seq >= acked || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every stored message of a conversation as (id, seq), oldest first.
async fn read_history(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<Vec<(u128, u64)>> {
    let mut history = Vec::new();
    let mut after = 0u64;
    loop {
        let page: Page = client
            .get(format!("{url}/messages?limit={PAGE}&after={after}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("reading {url}/messages after {after}"))?
            .json()
            .await?;
        for item in &page.items {
            let id = uuid::Uuid::parse_str(&item.id).with_context(|| {
                format!("history holds a message id that is no UUID: {}", item.id)
            })?;
            history.push((id.as_u128(), item.seq));
            after = after.max(item.seq);
        }
        if !page.has_more || page.items.is_empty() {
            return Ok(history);
        }
    }
}

/// The acknowledged ids against one conversation's history.
fn compare(acked: &[u128], history: &[(u128, u64)]) -> HistoryCheck {
    let mut times: HashMap<u128, u64> = HashMap::with_capacity(history.len());
    let mut check = HistoryCheck {
        acked: acked.len() as u64,
        history_messages: history.len() as u64,
        ..HistoryCheck::default()
    };
    let mut previous = 0;
    for &(id, seq) in history {
        if seq != previous + 1 {
            check.seq_gaps += 1;
        }
        previous = seq;
        *times.entry(id).or_default() += 1;
    }
    for id in acked {
        match times.remove(id) {
            None => check.lost += 1,
            Some(1) => check.found += 1,
            Some(_) => {
                check.found += 1;
                check.duplicated += 1;
            }
        }
    }
    check.unacknowledged_stored = times.len() as u64;
    check
}

/// Records the server holds in a topic (sum of `high - low` over partitions); 0 when the topic
/// does not exist.
pub(crate) async fn topic_records(
    client: &reqwest::Client,
    base: &str,
    admin_token: &str,
    topic: &str,
) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    struct Partition {
        low: u64,
        high: u64,
    }
    #[derive(Deserialize)]
    struct Topic {
        partitions: Vec<Partition>,
    }
    let response = client
        .get(format!("{base}/api/topics/{topic}"))
        .bearer_auth(admin_token)
        .send()
        .await?;
    if response.status() == 404 {
        return Ok(0);
    }
    let topic: Topic = response
        .error_for_status()
        .with_context(|| format!("describing topic {topic}"))?
        .json()
        .await?;
    Ok(topic.partitions.iter().map(|p| p.high - p.low).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_duplicated_and_gaps_are_counted() {
        let history = [(10, 1), (11, 2), (11, 3), (13, 5), (99, 6)];
        let check = compare(&[10, 11, 12, 13], &history);
        assert_eq!(check.acked, 4);
        assert_eq!(check.found, 3);
        assert_eq!(check.lost, 1);
        assert_eq!(check.duplicated, 1);
        assert_eq!(check.seq_gaps, 1);
        assert_eq!(check.unacknowledged_stored, 1);
    }

    #[test]
    fn a_clean_history_passes() {
        let check = compare(&[1, 2], &[(1, 1), (7, 2), (2, 3)]);
        assert_eq!((check.lost, check.duplicated, check.seq_gaps), (0, 0, 0));
        assert_eq!(check.unacknowledged_stored, 1);
    }
}
