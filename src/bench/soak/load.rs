//! The soak's HTTP load: chat writes at a fixed total rate (open loop), a mix of sends, edits,
//! deletes and read marks, from random members of random conversations, over one shared
//! keep-alive client. Each 202 to a send goes into the ledger; nothing is retried, so a send
//! in flight when the server is killed is simply not acknowledged.
//!
//! While the server restarts (no base URL) the schedule's ticks are skipped, and a tick that
//! finds every request slot busy is skipped too: the generator never queues up work.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::random::random_below;
use super::Shared;

/// Requests in flight at most; a tick that finds none free is skipped.
const IN_FLIGHT: usize = 64;
/// A read mark far above any conversation's last seq: the server clamps it to the last one.
const READ_ALL: u64 = 1 << 40;

/// The kinds of writes, with their share of the operations in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Send,
    Edit,
    Delete,
    Read,
}

impl Op {
    const MIX: [(Op, usize); 4] = [
        (Op::Send, 85),
        (Op::Edit, 6),
        (Op::Delete, 3),
        (Op::Read, 6),
    ];

    fn pick() -> Op {
        let mut roll = random_below(100);
        for (op, share) in Op::MIX {
            if roll < share {
                return op;
            }
            roll -= share;
        }
        Op::Send
    }

    fn name(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::Edit => "edit",
            Op::Delete => "delete",
            Op::Read => "read",
        }
    }
}

/// How the load runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadPlan {
    /// Operations per second in all.
    pub(crate) rate: u64,
    /// Content bytes of a send.
    pub(crate) size: usize,
    /// Share of operations that go to a larger conversation.
    pub(crate) group_share: f64,
}

/// What the load did (the acknowledged sends are in the ledger).
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    /// Edits answered 202.
    pub(crate) edits: AtomicU64,
    /// Deletes answered 202.
    pub(crate) deletes: AtomicU64,
    /// Read marks answered 204.
    pub(crate) read_marks: AtomicU64,
    /// Ticks skipped: the server was restarting, or every request slot was busy.
    pub(crate) skipped: AtomicU64,
    /// Notifications due by the soak's own view of who was offline at each 202.
    pub(crate) notifications_expected: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl LoadCounters {
    fn failed(&self, op: Op, status: u16) {
        let key = format!("{} {status}", op.name());
        *self.errors.lock().entry(key).or_default() += 1;
    }

    /// Failed operations by `"KIND STATUS"` (status 0: no answer, e.g. the server was killed).
    pub(crate) fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().clone()
    }
}

/// One summary of the load for the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoadReport {
    /// Edits answered 202.
    pub(crate) edits: u64,
    /// Deletes answered 202.
    pub(crate) deletes: u64,
    /// Read marks answered 204.
    pub(crate) read_marks: u64,
    /// Operations not started: the server was restarting, or every slot was busy.
    pub(crate) skipped: u64,
    /// Failed operations by `"KIND STATUS"` (0: no answer).
    pub(crate) errors: BTreeMap<String, u64>,
}

impl LoadCounters {
    /// The report's view.
    pub(crate) fn report(&self) -> LoadReport {
        LoadReport {
            edits: self.edits.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            read_marks: self.read_marks.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            errors: self.errors(),
        }
    }
}

/// Runs the schedule until `stop`, then waits for the requests in flight.
pub(crate) async fn run(shared: Arc<Shared>, plan: LoadPlan, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let content = "x".repeat(plan.size.max(1));
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(1) as f64);
    let started = Instant::now();
    let mut n = 0u32;
    loop {
        let due = started + interval * n;
        n = n.wrapping_add(1);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(due.into()) => {}
        }
        let base = shared.base.borrow().clone();
        let (Some(base), Ok(slot)) = (base, slots.clone().try_acquire_owned()) else {
            shared.load.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = shared.clone();
        let content = content.clone();
        tokio::spawn(async move {
            let _slot = slot;
            one_operation(&shared, &base, plan.group_share, &content).await;
        });
    }
    // Every slot back: no request of this run is still in flight.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
}

async fn one_operation(shared: &Shared, base: &str, group_share: f64, content: &str) {
    let world = &shared.world;
    let c = world.pick_conversation(group_share);
    let op = Op::pick();
    let outcome = match op {
        Op::Send => send(shared, base, c, content).await,
        Op::Edit => edit(shared, base, c).await,
        Op::Delete => delete(shared, base, c).await,
        Op::Read => read_mark(shared, base, c).await,
    };
    if let Err(status) = outcome {
        shared.load.failed(op, status);
    }
}

fn messages_url(shared: &Shared, base: &str, c: usize) -> String {
    format!(
        "{base}/api/conversations/{}/messages",
        shared.world.conversations[c]
    )
}

async fn send(shared: &Shared, base: &str, c: usize, content: &str) -> Result<(), u16> {
    let sender = shared.world.pick_member(c);
    let response = shared
        .client
        .post(messages_url(shared, base, c))
        .bearer_auth(&shared.world.tokens[sender])
        .json(&json!({ "content": content }))
        .send()
        .await
        .map_err(|_| 0u16)?;
    expect_status(&response, 202)?;
    // Read before the body: who is offline at the moment of the 202.
    let due = shared.presence.offline_recipients(&shared.world, c, sender);
    let body: serde_json::Value = response.json().await.map_err(|_| 0u16)?;
    let id = body["id"].as_str().ok_or(0u16)?;
    if let Err(e) = shared.ledger.acknowledge(c, id, sender) {
        tracing::error!(error = %e, "a 202 the soak cannot account for");
        return Err(0);
    }
    shared
        .load
        .notifications_expected
        .fetch_add(due, Ordering::Relaxed);
    Ok(())
}

async fn edit(shared: &Shared, base: &str, c: usize) -> Result<(), u16> {
    let Some(target) = shared.ledger.edit_target(c) else {
        return Ok(());
    };
    let request = shared
        .client
        .patch(format!("{}/{}", messages_url(shared, base, c), target.id))
        .bearer_auth(&shared.world.tokens[target.sender])
        .json(&json!({ "content": "edited by the soak" }));
    counted(request, 202, &shared.load.edits).await
}

async fn delete(shared: &Shared, base: &str, c: usize) -> Result<(), u16> {
    let Some(target) = shared.ledger.delete_target(c) else {
        return Ok(());
    };
    let request = shared
        .client
        .delete(format!("{}/{}", messages_url(shared, base, c), target.id))
        .bearer_auth(&shared.world.tokens[target.sender]);
    counted(request, 202, &shared.load.deletes).await
}

async fn read_mark(shared: &Shared, base: &str, c: usize) -> Result<(), u16> {
    let reader = shared.world.pick_member(c);
    let request = shared
        .client
        .post(format!(
            "{base}/api/conversations/{}/read",
            shared.world.conversations[c]
        ))
        .bearer_auth(&shared.world.tokens[reader])
        .json(&json!({ "seq": READ_ALL }));
    counted(request, 204, &shared.load.read_marks).await
}

/// Sends `request`; counts it in `done` when answered `expected`, else fails with the status.
async fn counted(
    request: reqwest::RequestBuilder,
    expected: u16,
    done: &AtomicU64,
) -> Result<(), u16> {
    let response = request.send().await.map_err(|_| 0u16)?;
    expect_status(&response, expected)?;
    done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn expect_status(response: &reqwest::Response, expected: u16) -> Result<(), u16> {
    match response.status().as_u16() {
        status if status == expected => Ok(()),
        status => Err(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_to_every_operation() {
        assert_eq!(Op::MIX.iter().map(|(_, share)| share).sum::<usize>(), 100);
        let sends = (0..2000).filter(|_| Op::pick() == Op::Send).count();
        assert!((1500..2000).contains(&sends), "{sends} sends of 2000");
    }
}
