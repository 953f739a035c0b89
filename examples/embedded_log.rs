//! The log as a library ("embedded Kafka"): open a data directory, create a topic, append keyed
//! records, read them back, commit a consumer group's offsets and ask for its lag.
//!
//! Run with `cargo run --release --example embedded_log` (it works in a temporary directory).

use std::time::Duration;

use tidings::log::{Log, LogConfig, ReadLimits, Record, TopicConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // Opening recovers every topic, watermark and offset already in the directory.
    let log = Log::open(LogConfig::new(dir.path()))?;
    log.create_topic("orders", TopicConfig::with_partitions(3))
        .await?;

    // Records with the same key land in the same partition, in order. The append returns once
    // the records are durable (durability `always`: flushed and fdatasync'd).
    let records = ["apple", "pear", "fig", "plum"]
        .iter()
        .enumerate()
        .map(|(i, fruit)| {
            let customer = format!("customer-{}", i % 2);
            Record::keyed(customer, format!(r#"{{"item":"{fruit}"}}"#))
                .with_header("source", "example")
        })
        .collect();
    for landed in log.append("orders", records).await? {
        println!(
            "appended at partition {} offset {}",
            landed.partition, landed.offset
        );
    }

    // A consumer group reads each partition from its committed offset (the next one to read)
    // and commits after processing, as in Kafka.
    let group = "billing";
    for partition in log.describe_topic("orders")?.partitions {
        let from = log
            .committed_offset(group, "orders", partition.partition)?
            .unwrap_or(partition.low);
        let batch = log.read(
            "orders",
            partition.partition,
            from,
            ReadLimits::records(100),
        )?;
        for record in &batch {
            println!(
                "read {}:{} key={} value={}",
                record.partition,
                record.offset,
                String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(&record.value)
            );
        }
        if let Some(last) = batch.last() {
            log.commit_offset(group, "orders", partition.partition, last.offset + 1)?;
        }
    }

    // One more record: the group now lags by one on its partition.
    log.append(
        "orders",
        vec![Record::keyed("customer-0", r#"{"item":"kiwi"}"#)],
    )
    .await?;
    for lag in log.group_lag(group, "orders")? {
        println!(
            "partition {}: committed {:?}, high {}, lag {}",
            lag.partition, lag.committed, lag.high, lag.lag
        );
    }

    // Long-poll style: wait (without polling) for a record at the partition's end.
    let partition = log.describe_topic("orders")?.partitions[0];
    let arrived = log
        .wait_for("orders", 0, partition.high, Duration::from_millis(10))
        .await?;
    println!("a new record on partition 0 within 10 ms: {arrived}");

    log.shutdown();
    Ok(())
}
