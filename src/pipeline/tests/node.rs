//! Helpers shared by the pipeline tests: a node (log + store + pipeline) that can be
//! stopped and reopened on the same directory, and readers of what the topics hold.

use crate::testing::reopen;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::hub::{Hub, HubConfig};
use crate::log::{Appended, Durability, Log, LogConfig, ReadLimits, StoredRecord};
use crate::pipeline::{self, Pipeline, PipelineConfig, EVENTS_TOPIC, MESSAGES_TOPIC};
use crate::store::{ChatCommand, MessageEvent, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Node {
    pub(crate) log: Log,
    pub(crate) store: Store,
    pub(crate) pipeline: Pipeline,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Opens the log of `dir` (again, possibly: see [`reopen`]).
pub(crate) fn open_log(dir: &Path) -> Log {
    let mut config = LogConfig::new(dir);
    config.durability = Durability::Never;
    reopen(|| Log::open(config.clone()))
}

pub(crate) async fn start(dir: &Path, config: PipelineConfig) -> Node {
    let log = open_log(dir);
    let store = reopen(|| Store::open(dir));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let pipeline = pipeline::start(
        log.clone(),
        store.clone(),
        Hub::new(HubConfig::default()),
        config,
        shutdown.clone(),
        &tracker,
    )
    .await
    .expect("start pipeline");
    Node {
        log,
        store,
        pipeline,
        shutdown,
        tracker,
    }
}

pub(crate) fn config(partitions: u32) -> PipelineConfig {
    PipelineConfig {
        partitions,
        ..PipelineConfig::default()
    }
}

impl Node {
    /// Cancels the workers, waits for them to catch up and exit, and closes the log so the
    /// directory can be reopened.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let log = self.log.clone();
        drop(self);
        log.shutdown();
    }

    pub(crate) async fn submit(&self, command: &ChatCommand) -> Appended {
        self.pipeline.submit(command).await.expect("submit")
    }

    /// Creates conversation `id` by `creator` with `others` through the log, as the API does.
    pub(crate) async fn create_conversation(&self, creator: &str, id: &str, others: Vec<String>) {
        let command = self
            .store
            .prepare_conversation(creator, Some(id.into()), None, others)
            .expect("a valid conversation");
        self.pipeline
            .change_conversation(
                &ChatCommand::CreateConversation(command),
                Duration::from_secs(10),
            )
            .await
            .expect("create");
    }

    pub(crate) async fn applied(&self, appended: Appended) {
        assert!(
            self.pipeline
                .wait_applied(appended, Duration::from_secs(10))
                .await,
            "record {appended:?} applied within 10 s"
        );
    }
}

pub(crate) fn read_all(log: &Log, topic: &str) -> Vec<StoredRecord> {
    let partitions = log.describe_topic(topic).expect("topic").partitions;
    let mut all = Vec::new();
    for p in partitions {
        let mut offset = p.low;
        while offset < p.high {
            let records = log
                .read(topic, p.partition, offset, ReadLimits::records(10_000))
                .expect("read");
            offset = records.last().map_or(p.high, |r| r.offset + 1);
            all.extend(records);
        }
    }
    all
}

/// Every event of `messages.sent`, by partition in offset order.
pub(crate) fn events(log: &Log) -> Vec<MessageEvent> {
    read_all(log, EVENTS_TOPIC)
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("event JSON"))
        .collect()
}

/// Every command of `messages`, grouped by conversation, in log order.
pub(crate) fn commands_by_conversation(log: &Log) -> BTreeMap<String, Vec<ChatCommand>> {
    let mut by = BTreeMap::<String, Vec<ChatCommand>>::new();
    for record in read_all(log, MESSAGES_TOPIC) {
        let command: ChatCommand = serde_json::from_slice(&record.value).expect("command JSON");
        by.entry(command.conversation_id().to_owned())
            .or_default()
            .push(command);
    }
    by
}
