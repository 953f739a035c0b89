//! Row 2: read a stream from its start. Each driver first fills a fresh stream with `--records`
//! records of `--size` bytes (not timed into the read figure), then one consumer reads them all
//! back in pages of `--batch`: Tidings with `GET …/records?offset=N&limit=B`, Redis with
//! `XRANGE … COUNT B`, JetStream with a pull consumer fetching B messages per request (acks off).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::append::create_nats_stream;
use crate::cpu::CpuClock;
use crate::load::record_value;
use crate::tidings::{call, json_string_of_size, LogSystem, ServerArgs, TidingsArgs};

/// Options of `peers consume`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Which system to read from.
    #[arg(long, value_enum)]
    pub system: LogSystem,
    /// The server.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Records to fill the stream with, then read.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Bytes per record.
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Records per read request (Tidings allows at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Stream / topic name (must not exist yet).
    #[arg(long, default_value = "backlog")]
    pub stream: String,
}

/// Fills, then reads, and returns the JSON report.
pub async fn run(args: &ConsumeArgs) -> Result<serde_json::Value> {
    let fill_started = Instant::now();
    let reader: Box<dyn FnOnce() -> ReadFuture> = match args.system {
        LogSystem::Tidings => {
            let tidings = args.server.tidings()?;
            let token = tidings.token("peers-consume", &["admin"])?;
            tidings.create_topic(&token, &args.stream).await?;
            fill_tidings(&tidings, &token, args).await?;
            let args = (tidings, token, args.stream.clone(), args.batch);
            Box::new(move || Box::pin(read_tidings(args.0, args.1, args.2, args.3)))
        }
        LogSystem::Redis => {
            let client = redis::Client::open(args.server.url.as_str())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            fill_redis(&mut connection, args).await?;
            let (stream, batch) = (args.stream.clone(), args.batch);
            Box::new(move || Box::pin(read_redis(connection, stream, batch)))
        }
        LogSystem::Nats => {
            let stream = create_nats_stream(&args.server.url, &args.stream).await?;
            fill_nats(&args.server.url, args).await?;
            let batch = args.batch;
            Box::new(move || Box::pin(read_nats(stream, batch)))
        }
    };
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let clock = CpuClock::start(&args.server.server_pids);
    let started = Instant::now();
    let read = reader().await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = clock.stop();
    if read != args.records {
        bail!("read {read} records, expected {}", args.records);
    }
    Ok(json!({
        "records": read,
        "size": args.size,
        "batch": args.batch,
        "fillSeconds": fill_seconds,
        "seconds": seconds,
        "recordsPerSec": read as f64 / seconds,
        "generatorCpuCores": cpu.generator_cpu_cores,
        "serverCpuCores": cpu.server_cpu_cores,
    }))
}

type ReadFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64>> + Send>>;

/// Records per fill request (Tidings' `limits.maxBatchRecords` default) and fill requests in
/// flight: filling is setup, so it goes as fast as each system takes batches.
const FILL_BATCH: u64 = 1000;
const FILL_IN_FLIGHT: usize = 4;

async fn fill_tidings(tidings: &TidingsArgs, token: &str, args: &ConsumeArgs) -> Result<()> {
    let record = format!(r#"{{"value":{}}}"#, json_string_of_size(args.size));
    let batches = args.records.div_ceil(FILL_BATCH);
    let client = TidingsArgs::client()?;
    let url = tidings.records_url(&args.stream);
    let requests = futures_util::stream::iter(0..batches).map(|batch| {
        let count = FILL_BATCH.min(args.records - batch * FILL_BATCH) as usize;
        let body = format!(
            r#"{{"records":[{}]}}"#,
            vec![record.as_str(); count].join(",")
        );
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let answer = call(request, token, 202, "filling the topic").await?;
            anyhow::Ok(answer.bytes().await?)
        }
    });
    let mut responses = requests.buffer_unordered(FILL_IN_FLIGHT);
    while let Some(response) = responses.next().await {
        response?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordsPage {
    records: Vec<serde::de::IgnoredAny>,
    next_offset: u64,
}

async fn read_tidings(
    tidings: TidingsArgs,
    token: String,
    topic: String,
    batch: usize,
) -> Result<u64> {
    let client = TidingsArgs::client()?;
    let url = format!("{}/api/topics/{topic}/partitions/0/records", tidings.url);
    let (mut offset, mut read) = (0u64, 0u64);
    loop {
        let request = client
            .get(&url)
            .query(&[("offset", offset), ("limit", batch as u64)]);
        let page: RecordsPage = call(request, &token, 200, "reading records")
            .await?
            .json()
            .await?;
        if page.records.is_empty() {
            return Ok(read);
        }
        read += page.records.len() as u64;
        offset = page.next_offset;
    }
}

async fn fill_redis(
    connection: &mut redis::aio::MultiplexedConnection,
    args: &ConsumeArgs,
) -> Result<()> {
    let value = record_value(args.size);
    let mut left = args.records;
    while left > 0 {
        let count = FILL_BATCH.min(left);
        let mut pipeline = redis::pipe();
        for _ in 0..count {
            pipeline
                .cmd("XADD")
                .arg(&args.stream)
                .arg("*")
                .arg("v")
                .arg(&value)
                .ignore();
        }
        let () = pipeline.query_async(connection).await?;
        left -= count;
    }
    Ok(())
}

/// One `XRANGE` entry: its id and its field/value pairs, flat.
type RedisEntry = (String, Vec<Vec<u8>>);

async fn read_redis(
    mut connection: redis::aio::MultiplexedConnection,
    stream: String,
    batch: usize,
) -> Result<u64> {
    let mut start = "-".to_owned();
    let mut read = 0u64;
    loop {
        let entries: Vec<RedisEntry> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(batch)
            .query_async(&mut connection)
            .await?;
        let Some((last_id, _)) = entries.last() else {
            return Ok(read);
        };
        // `(` makes the next page start after the last id seen.
        start = format!("({last_id}");
        read += entries.len() as u64;
    }
}

async fn fill_nats(url: &str, args: &ConsumeArgs) -> Result<()> {
    let client = async_nats::connect(url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let subject = format!("{}.records", args.stream);
    let value: Vec<u8> = record_value(args.size);
    let mut left = args.records;
    while left > 0 {
        let count = FILL_BATCH.min(left);
        let mut acks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            acks.push(
                jetstream
                    .publish(subject.clone(), value.clone().into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await.context("a fill publish was not acknowledged")?;
        }
        left -= count;
    }
    Ok(())
}

async fn read_nats(stream: async_nats::jetstream::stream::Stream, batch: usize) -> Result<u64> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let total = stream.get_info().await?.state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await?;
    let mut read = 0u64;
    while read < total {
        match messages.next().await {
            Some(message) => {
                message?;
                read += 1;
            }
            None => break,
        }
    }
    Ok(read)
}
