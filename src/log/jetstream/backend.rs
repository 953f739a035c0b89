//! The JetStream log as a [`LogBackend`]: reads from the node's replicas (from the stream, waited
//! for, below their cached tails), appends and topic changes on the cluster, group offsets on
//! the cluster waited for from synchronous calls.
//!
//! Owns no logic of its own beyond that routing; what each call does is on [`LogBackend`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::watch;

use super::blocking::wait_on;
use super::replica::Lookup;
use super::JetStreamLog;
use crate::log::{
    Appended, LogBackend, LogError, LogStats, PartitionLag, ReadLimits, Record, ResetPlan, Result,
    StoredRecord, TopicConfig, TopicInfo,
};

impl LogBackend for JetStreamLog {
    fn append<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<Vec<Appended>>> {
        self.inner.append(topic, partition, records).boxed()
    }

    fn append_blocking(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        wait_on(
            &self.inner.runtime,
            self.inner.append(topic, partition, records),
        )
    }

    /// Every acknowledged append is already stored by the quorum (on disk with
    /// `sync_interval: always`): nothing is left to sync.
    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        async { self.inner.check_open() }.boxed()
    }

    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        config: TopicConfig,
    ) -> BoxFuture<'a, Result<TopicInfo>> {
        self.inner.create_topic(name, config).boxed()
    }

    fn alter_topic<'a>(
        &'a self,
        name: &'a str,
        config: TopicConfig,
    ) -> BoxFuture<'a, Result<TopicInfo>> {
        self.inner.alter_topic(name, config).boxed()
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        self.inner.delete_topic(name).boxed()
    }

    fn topic_names(&self) -> Vec<String> {
        self.inner.topic_names()
    }

    fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        self.inner.describe_topic(name)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        let replica = self.inner.replica(topic, partition)?;
        match replica.read(offset, limits)? {
            Lookup::Here(records) => Ok(records),
            Lookup::Below { from, until } => wait_on(
                &self.inner.runtime,
                self.inner.read_below_tail(&replica, from, until, limits),
            ),
        }
    }

    fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        Ok(self.inner.replica(topic, partition)?.watermarks())
    }

    fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>> {
        Ok(self.inner.replica(topic, partition)?.subscribe())
    }

    fn offset_for_time(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<u64> {
        let replica = self.inner.replica(topic, partition)?;
        match replica.offset_for_time(timestamp_ms) {
            Lookup::Here(offset) => Ok(offset),
            Lookup::Below { .. } => wait_on(
                &self.inner.runtime,
                self.inner.offset_for_time(&replica, timestamp_ms),
            ),
        }
    }

    fn commit_offset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()> {
        wait_on(
            &self.inner.runtime,
            self.inner.commit_offset(group, topic, partition, offset),
        )
    }

    fn commit_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()> {
        wait_on(
            &self.inner.runtime,
            self.inner
                .commit_offset_with_metadata(group, topic, partition, offset, metadata),
        )
    }

    fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>> {
        wait_on(
            &self.inner.runtime,
            self.inner
                .committed_offset_with_metadata(group, topic, partition),
        )
    }

    fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        Ok(self
            .committed_offset_with_metadata(group, topic, partition)?
            .map(|(offset, _)| offset))
    }

    fn reset_offsets(&self, group: &str, topic: &str, plan: &ResetPlan) -> Result<Vec<(u32, u64)>> {
        wait_on(
            &self.inner.runtime,
            self.inner.reset_offsets(group, topic, plan),
        )
    }

    fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>> {
        wait_on(&self.inner.runtime, self.inner.group_lag(group, topic))
    }

    fn group_names(&self) -> Result<Vec<String>> {
        wait_on(&self.inner.runtime, self.inner.group_names())
    }

    fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        wait_on(&self.inner.runtime, self.inner.group_topics(group))
    }

    fn enforce_retention(&self) -> BoxFuture<'_, Result<u64>> {
        self.inner.enforce_retention().boxed()
    }

    /// The cluster log is never poisoned: a failed request fails that call only.
    fn poison_reason(&self) -> Option<String> {
        None
    }

    fn write_refusal(&self) -> Option<LogError> {
        self.inner.write_refusal()
    }

    /// The counters, and the bytes the node's replicas hold in memory.
    fn stats(&self) -> LogStats {
        LogStats {
            cached_bytes: self.inner.cached_bytes(),
            ..self.inner.counters.snapshot()
        }
    }

    /// A record another node appended reaches this node's replica through the stream's
    /// feed, as an append waits for its own (`cluster.requestTimeoutMs`).
    fn catch_up_within(&self) -> Duration {
        self.inner.config.request_timeout
    }

    /// Bytes of this deployment's streams on the cluster (one copy), as of the last retention
    /// pass.
    fn disk_bytes(&self) -> Result<u64> {
        Ok(self.inner.stream_bytes.load(Ordering::Relaxed))
    }

    fn shutdown(&self) {
        self.inner.close();
    }
}
