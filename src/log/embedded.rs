//! The embedded log as a [`LogBackend`]: each call forwards to [`SledLog`]'s own method.
//!
//! It owns no logic of its own; what the calls do is documented on [`SledLog`] and, for any
//! backend, on [`LogBackend`].

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::watch;

use super::{
    Appended, LogBackend, LogError, LogStats, PartitionLag, Queueing, ReadLimits, Record,
    ResetPlan, Result, SledLog, StoredRecord, TopicConfig, TopicInfo,
};

impl LogBackend for SledLog {
    fn append<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<Vec<Appended>>> {
        match partition {
            None => SledLog::append(self, topic, records).boxed(),
            Some(partition) => SledLog::append_to(self, topic, partition, records).boxed(),
        }
    }

    fn append_blocking(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>> {
        self.submit(topic, partition, records, Queueing::Wait)?
            .blocking_recv()
            .unwrap_or(Err(LogError::Closed))
    }

    fn append_lingering<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        records: Vec<Record>,
    ) -> BoxFuture<'a, Result<Vec<Appended>>> {
        SledLog::append_lingering(self, topic, partition, records).boxed()
    }

    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        SledLog::sync(self).boxed()
    }

    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        config: TopicConfig,
    ) -> BoxFuture<'a, Result<TopicInfo>> {
        SledLog::create_topic(self, name, config).boxed()
    }

    fn alter_topic<'a>(
        &'a self,
        name: &'a str,
        config: TopicConfig,
    ) -> BoxFuture<'a, Result<TopicInfo>> {
        SledLog::alter_topic(self, name, config).boxed()
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        SledLog::delete_topic(self, name).boxed()
    }

    fn topic_names(&self) -> Vec<String> {
        SledLog::topic_names(self)
    }

    fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        SledLog::describe_topic(self, name)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        SledLog::read(self, topic, partition, offset, limits)
    }

    fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        SledLog::watermarks(self, topic, partition)
    }

    fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>> {
        SledLog::subscribe(self, topic, partition)
    }

    fn offset_for_time(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<u64> {
        SledLog::offset_for_time(self, topic, partition, timestamp_ms)
    }

    fn commit_offset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()> {
        SledLog::commit_offset(self, group, topic, partition, offset)
    }

    fn commit_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        metadata: &str,
    ) -> Result<()> {
        SledLog::commit_offset_with_metadata(self, group, topic, partition, offset, metadata)
    }

    fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>> {
        SledLog::committed_offset_with_metadata(self, group, topic, partition)
    }

    fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        SledLog::committed_offset(self, group, topic, partition)
    }

    fn reset_offsets(&self, group: &str, topic: &str, plan: &ResetPlan) -> Result<Vec<(u32, u64)>> {
        SledLog::reset_offsets(self, group, topic, plan)
    }

    fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>> {
        SledLog::group_lag(self, group, topic)
    }

    fn group_names(&self) -> Result<Vec<String>> {
        SledLog::group_names(self)
    }

    fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        SledLog::group_topics(self, group)
    }

    fn enforce_retention(&self) -> BoxFuture<'_, Result<u64>> {
        SledLog::enforce_retention(self).boxed()
    }

    fn poison_reason(&self) -> Option<String> {
        SledLog::poison_reason(self)
    }

    fn write_refusal(&self) -> Option<LogError> {
        SledLog::write_refusal(self)
    }

    fn stats(&self) -> LogStats {
        SledLog::stats(self)
    }

    /// Every append goes through this process.
    fn catch_up_within(&self) -> Duration {
        Duration::ZERO
    }

    fn disk_bytes(&self) -> Result<u64> {
        SledLog::disk_bytes(self)
    }

    fn shutdown(&self) {
        SledLog::shutdown(self)
    }
}
