//! The admin command line: `tidings topics|produce|tail|groups|dlq`, like Kafka's console tools.
//!
//! This module owns what every admin command shares: the options (`CommonArgs`: `--server`,
//! `--token`, `--data-dir`, `--config`, `--json`), opening the log directly on the data
//! directory, the runtime the async log and HTTP calls run on, aligned text
//! tables, and how a record is rendered (as one JSON object per line, or as a line of text). Each
//! command family has its own file: [`topics`], [`produce`], [`tail`], [`groups`], [`dlq`].
//! [`serve`] holds only the flags of `tidings serve`, shared by `main` and whoever runs
//! [`crate::server::run`] in its own process, such as the integration tests.
//!
//! Every admin command works in two modes with the same flags and output: it asks a running
//! server over HTTP (`--server URL`, `remote`), or opens the data directory itself; `connect`
//! decides which. Each command turns what either mode answers into the same data, which one
//! printer prints. Errors are returned as `anyhow::Error`; `main` prints them as
//! `error: <message>` and exits with 1.

mod connect;
pub mod dlq;
pub mod groups;
pub mod log_format;
mod pinned;
pub mod produce;
pub(crate) mod remote;
pub mod serve;
pub mod stderr_lines;
pub mod tail;
pub mod token;
pub mod topics;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::{Config, Overrides};
use crate::log::{Header, Log, LogConfig, StoredRecord};

/// Options every admin command takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CommonArgs {
    /// Ask the server at this URL (e.g. http://127.0.0.1:8787) instead of opening the data
    /// directory.
    #[arg(long, global = true, env = "TIDINGS_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,
    /// Token for the server [default: one with scope admin, signed with the data directory's
    /// secret or --config's auth.jwtSecret].
    #[arg(
        long,
        global = true,
        env = "TIDINGS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
    /// The data directory to open (or whose secret signs the token) [default: --config's
    /// dataDir, else ./data].
    #[arg(long, global = true, env = "TIDINGS_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The server's configuration file: its dataDir and auth.jwtSecret.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Machine output: one JSON object per line.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl CommonArgs {
    /// The data directory: `--data-dir` (or `TIDINGS_DATA_DIR`), else `--config`'s `dataDir`,
    /// else `./data`.
    pub(crate) fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        match &self.config {
            Some(file) => Ok(Config::load(Some(file), Overrides::default())?.data_dir),
            None => Ok(PathBuf::from("./data")),
        }
    }
}

/// Whether a command may create a missing data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Only `topics create` starts a new data directory.
    MayCreate,
    /// Everything else refuses a missing directory instead of leaving an empty one behind.
    MustExist,
}

/// Opens the log on the data directory, as the server would, but never creating topics on the
/// fly: the admin tools only touch topics that were created on purpose.
pub(crate) fn open_log(common: &CommonArgs, access: Access) -> anyhow::Result<Log> {
    let dir = &common.data_dir()?;
    if access == Access::MustExist && !dir.exists() {
        anyhow::bail!(
            "the data directory {} does not exist (create a topic with `tidings topics create`, \
             or point --data-dir or TIDINGS_DATA_DIR elsewhere)",
            dir.display()
        );
    }
    let mut config = LogConfig::new(dir);
    config.auto_create_topics = false;
    // No context added: the log's own messages (notably `Locked`) already name the directory.
    Ok(Log::open(config)?)
}

/// A single-threaded runtime for the log's async calls (topic changes, appends, waiting).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Writes one value as a line of compact JSON.
pub(crate) fn write_json_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

// ----- records ---------------------------------------------------------------------------------

/// A record as `--json` prints it: one object per line, in this field order.
#[derive(Debug, Serialize)]
pub(crate) struct RecordJson {
    /// Partition.
    pub(crate) partition: u32,
    /// Offset within the partition.
    pub(crate) offset: u64,
    /// The key (see [`bytes_to_json`]); `null` when the record has none.
    pub(crate) key: Option<Box<RawValue>>,
    /// The value (see [`bytes_to_json`]).
    pub(crate) value: Box<RawValue>,
    /// Append time, RFC 3339 in UTC with milliseconds.
    pub(crate) timestamp: String,
    /// Header name → value (see [`bytes_to_json`]), sorted by name; a repeated name keeps its
    /// last value.
    pub(crate) headers: BTreeMap<String, Box<RawValue>>,
}

impl RecordJson {
    /// Renders a stored record.
    pub(crate) fn new(record: &StoredRecord) -> anyhow::Result<RecordJson> {
        Ok(RecordJson {
            partition: record.partition,
            offset: record.offset,
            key: record.key.as_deref().map(bytes_to_json).transpose()?,
            value: bytes_to_json(&record.value)?,
            timestamp: format_timestamp(record.timestamp_ms),
            headers: headers_to_json(&record.headers)?,
        })
    }
}

fn headers_to_json(headers: &[Header]) -> anyhow::Result<BTreeMap<String, Box<RawValue>>> {
    headers
        .iter()
        .map(|h| Ok((h.key.clone(), bytes_to_json(&h.value)?)))
        .collect()
}

/// Bytes as a JSON value: the bytes themselves when they are one JSON document (copied verbatim,
/// so large numbers keep every digit; a document spread over several lines is compacted so that
/// each record stays on one line), a string when they are UTF-8, and a base64 string (standard
/// alphabet, padded) otherwise.
pub(crate) fn bytes_to_json(bytes: &[u8]) -> anyhow::Result<Box<RawValue>> {
    let string = match std::str::from_utf8(bytes) {
        Ok(text) => match json_document(text) {
            Some(document) => return Ok(document),
            None => text.to_owned(),
        },
        Err(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    Ok(serde_json::value::to_raw_value(&string)?)
}

fn json_document(text: &str) -> Option<Box<RawValue>> {
    if !text.contains(['\n', '\r']) {
        return serde_json::from_str(text).ok();
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    serde_json::value::to_raw_value(&value).ok()
}

/// A record as one line of text: `PARTITION:OFFSET<TAB>KEY<TAB>VALUE`, the key `-` when absent.
pub(crate) fn record_text_line(record: &StoredRecord) -> String {
    let key = record
        .key
        .as_deref()
        .map_or_else(|| "-".into(), bytes_to_text);
    format!(
        "{}:{}\t{}\t{}",
        record.partition,
        record.offset,
        key,
        bytes_to_text(&record.value)
    )
}

/// UTF-8 with line breaks and tabs escaped (`\n`, `\r`, `\t`, `\\`); other bytes as
/// `base64:` followed by their base64.
fn bytes_to_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t"),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

// ----- time ------------------------------------------------------------------------------------

/// Last millisecond the RFC 3339 formatter can write (9999-12-31T23:59:59.999Z).
const MAX_FORMATTABLE_MS: i64 = 253_402_300_799_999;

/// Milliseconds since the epoch as RFC 3339 in UTC, e.g. `2024-05-01T10:00:00.123Z` (clamped
/// to 1970..=9999, which the log's clock never leaves).
pub(crate) fn format_timestamp(timestamp_ms: i64) -> String {
    let ms = timestamp_ms.clamp(0, MAX_FORMATTABLE_MS).unsigned_abs();
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 time (`2024-05-01T10:00:00Z`, fractions allowed, or with an offset such
/// as `+02:00`) into milliseconds since the epoch.
pub(crate) fn parse_timestamp(text: &str) -> Result<i64, String> {
    let invalid = |e: &dyn std::fmt::Display| {
        format!("{text:?} is not an RFC 3339 time like 2024-05-01T10:00:00Z ({e})")
    };
    let (utc, offset_secs) = split_utc_offset(text).ok_or_else(|| invalid(&"bad offset"))?;
    let time = humantime::parse_rfc3339(&utc).map_err(|e| invalid(&e))?;
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| invalid(&e))?;
    let ms = i64::try_from(since_epoch.as_millis()).map_err(|e| invalid(&e))?;
    Ok(ms - offset_secs * 1000)
}

/// Splits a trailing `±HH:MM` offset off (returning the time with `Z` instead, and the offset in
/// seconds); a time without one is returned as it is. `None` for a malformed offset.
fn split_utc_offset(text: &str) -> Option<(String, i64)> {
    let Some(split) = text.len().checked_sub(6) else {
        return Some((text.to_owned(), 0));
    };
    let (base, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Some((text.to_owned(), 0)),
    };
    if offset.as_bytes().get(3) != Some(&b':') {
        return Some((text.to_owned(), 0));
    }
    let hours: i64 = offset.get(1..3)?.parse().ok()?;
    let minutes: i64 = offset.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((format!("{base}Z"), sign * (hours * 3600 + minutes * 60)))
}

// ----- tables ----------------------------------------------------------------------------------

/// Plain-text table with left-aligned, space-separated columns sized to their widest cell.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub(crate) fn new(headings: &[&str]) -> Table {
        Table {
            rows: vec![headings.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (as many cells as headings).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table; trailing spaces are trimmed from every line.
    pub(crate) fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let cells = self.rows.iter().filter_map(|row| row.get(c));
                cells.map(|cell| cell.chars().count()).max().unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// An optional number as a table cell (`-` when absent).
pub(crate) fn cell(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_json_text_or_base64() {
        assert_eq!(bytes_to_json(br#"{"a": 1}"#).unwrap().get(), r#"{"a": 1}"#);
        assert_eq!(bytes_to_json(b" 42 ").unwrap().get(), "42");
        assert_eq!(
            bytes_to_json(b"123456789012345678901234567890")
                .unwrap()
                .get(),
            "123456789012345678901234567890"
        );
        assert_eq!(bytes_to_json(b"hello").unwrap().get(), r#""hello""#);
        assert_eq!(bytes_to_json(b"").unwrap().get(), r#""""#);
        assert_eq!(bytes_to_json(b"{\n\"a\":\n1}").unwrap().get(), r#"{"a":1}"#);
        assert_eq!(bytes_to_json(&[0xff, 0, 1]).unwrap().get(), r#""/wAB""#);
    }

    #[test]
    fn text_lines_escape_line_breaks_and_mark_binary() {
        let record = StoredRecord {
            partition: 2,
            offset: 7,
            timestamp_ms: 0,
            key: None,
            headers: vec![],
            value: b"a\tb\nc".to_vec(),
        };
        assert_eq!(record_text_line(&record), "2:7\t-\ta\\tb\\nc");
        assert_eq!(bytes_to_text(&[0xff]), "base64:/w==");
    }

    #[test]
    fn timestamps_format_and_parse_as_rfc3339() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_714_557_600_123),
            "2024-05-01T10:00:00.123Z"
        );
        assert_eq!(format_timestamp(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00Z"),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00.5Z"),
            Ok(1_714_557_600_500)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:00:00+02:00"),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T08:30:00-01:30"),
            Ok(1_714_557_600_000)
        );
        assert!(parse_timestamp("2024-05-01").is_err());
        assert!(parse_timestamp("2024-05-01T10:00:00+25:00").is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["NAME", "N"]);
        table.row(vec!["long-name".into(), "1".into()]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME       N\nlong-name  1\n"
        );
    }
}
