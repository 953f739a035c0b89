//! Reading records from a partition.
//!
//! A read finds the batch holding the start offset (the last key `<=` it), decodes forward and
//! stops at the high watermark, so a reader never sees a record that is not durable.

use super::batch;
use super::error::{LogError, Result};
use super::partition::Partition;
use super::record::StoredRecord;

/// How much one read returns at most. At least one record is returned when any is available,
/// even if it alone is larger than `max_bytes` (as Kafka's fetch does).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Most records.
    pub max_records: usize,
    /// Most bytes of keys, headers and values together.
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_records: 500,
            max_bytes: 1024 * 1024,
        }
    }
}

impl ReadLimits {
    /// At most `max_records` records, 1 MiB.
    pub fn records(max_records: usize) -> Self {
        ReadLimits {
            max_records,
            ..Self::default()
        }
    }
}

pub(crate) fn read(
    topic: &str,
    partition: &Partition,
    offset: u64,
    limits: ReadLimits,
) -> Result<Vec<StoredRecord>> {
    let high = partition.high();
    check_range(topic, partition, offset, high)?;
    if offset == high || limits.max_records == 0 {
        return Ok(Vec::new());
    }
    let start = match partition.tree.range(..=offset.to_be_bytes()).next_back() {
        Some(item) => item?.0,
        None => offset.to_be_bytes().as_slice().into(),
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    'batches: for item in partition.tree.range(start..) {
        let (key, value) = item?;
        let (_, records) = batch::decode(&value, partition.id)
            .map_err(|reason| batch::corrupt(topic, partition.id, &key, reason))?;
        for record in records.into_iter().filter(|r| r.offset >= offset) {
            let size = record.size();
            let full = out.len() >= limits.max_records
                || (!out.is_empty() && bytes + size > limits.max_bytes);
            if record.offset >= high || full {
                break 'batches;
            }
            bytes += size;
            out.push(record);
        }
    }
    ensure_starts_at(topic, partition, offset, high, &out)?;
    Ok(out)
}

fn check_range(topic: &str, partition: &Partition, offset: u64, high: u64) -> Result<()> {
    let low = partition.low();
    if offset < low || offset > high {
        return Err(LogError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition: partition.id,
            offset,
            earliest: low,
            latest: high,
        });
    }
    Ok(())
}

/// A read that did not start at the requested offset either raced with retention (the range
/// moved: out of range) or found a hole (corruption). Never hand out a silent gap.
fn ensure_starts_at(
    topic: &str,
    partition: &Partition,
    offset: u64,
    high: u64,
    out: &[StoredRecord],
) -> Result<()> {
    match out.first() {
        Some(first) if first.offset == offset => Ok(()),
        None if offset >= high => Ok(()),
        found => {
            check_range(topic, partition, offset, high)?;
            Err(LogError::Corrupt {
                location: format!("{topic}/{}@{offset}", partition.id),
                reason: format!(
                    "expected offset {offset}, found {}",
                    found.map_or("nothing".to_owned(), |r| r.offset.to_string())
                ),
            })
        }
    }
}
