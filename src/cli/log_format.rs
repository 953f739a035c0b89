//! How a line of the server's text log is written: its time ([`LineClock`]) and its fields
//! ([`PlainFields`]), as tracing-subscriber's defaults write them without colours, at a fraction
//! of their cost: its field formatter's styling wrappers and its clock took a quarter of a
//! one-record publish's instructions (one access-log line per request).
//!
//! Fields are `name=value` pairs separated by one space, the message first as plain text.
//! The message is written with the default formatter's guard against terminal injection: the
//! control characters a terminal acts on (ESC, BEL, BS, FF, DEL and the C1 range) are written as
//! escapes, never raw. Other values are written with `Debug` (strings quoted and escaped) or, for
//! `%value` fields, with `Display`, as the default formatter does. Errors recorded as
//! `&dyn Error` are handed to the default formatter, which also lists their sources. This module
//! decides nothing about which lines are written or where: the subscriber and
//! [`stderr_lines`](super::stderr_lines) do.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// The time at the head of a line: RFC 3339 in UTC with microseconds
/// (`2026-12-07T02:44:48.406556Z`), as tracing-subscriber's default clock writes it. Each
/// thread formats the date and the time of day once per second and writes only the
/// microseconds for the lines in between.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineClock;

thread_local! {
    /// The second last formatted on this thread, and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

impl FormatTime for LineClock {
    fn format_time(&self, writer: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (seconds, micros) = (now.as_secs(), now.subsec_micros());
        SECOND.with(|second| {
            let mut second = second.borrow_mut();
            if second.0 != seconds || second.1.is_empty() {
                let whole = UNIX_EPOCH + Duration::from_secs(seconds);
                let text = humantime::format_rfc3339_seconds(whole).to_string();
                *second = (seconds, text.trim_end_matches('Z').to_owned());
            }
            write!(writer, "{}.{micros:06}Z", second.1)
        })
    }
}

/// The field formatter (`SubscriberBuilder::fmt_fields`) of the server's text log.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> PlainVisitor<'a> {
        PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's or span's fields (see the module doc).
#[derive(Debug)]
pub struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// The separating space before every field but the first.
    fn pad(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.is_empty) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        default.record_error(field, value);
        self.result = default.finish();
        self.is_empty = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // The `log` crate's metadata, already written as the line's target.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = self.pad().and_then(|()| match name {
            "message" => write!(EscapeControls(&mut self.writer), "{value:?}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{name}={value:?}")
            }
        });
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Writes through, with the control characters a terminal acts on written as escapes.
struct EscapeControls<W>(W);

impl<W: fmt::Write> fmt::Write for EscapeControls<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(is_terminal_control) {
            self.0.write_str(&rest[..at])?;
            let control = rest[at..].chars().next().expect("found at a char boundary");
            match control {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", u32::from(control))?
                }
                c1 => write!(self.0, "\\u{{{:x}}}", u32::from(c1))?,
            }
            rest = &rest[at + control.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn is_terminal_control(c: char) -> bool {
    matches!(
        c,
        '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CapturedLog;

    /// The line `log` writes with `fields` as the field formatter.
    fn line_with<N>(fields: N, log: impl FnOnce()) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let captured = CapturedLog::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        captured.text()
    }

    fn access_line() {
        let user: Option<&str> = Some("alice");
        tracing::info!(
            target: "tidings::access",
            method = %"POST",
            route = "/v1/topics/{topic}/records",
            status = 202_u16,
            user,
            absent = Option::<&str>::None,
            latency_us = 41_u64,
            r#type = "chat",
            "request"
        );
    }

    #[test]
    fn lines_read_as_the_default_formatter_writes_them_without_colours() {
        let plain = line_with(PlainFields, access_line);
        let default = line_with(
            tracing_subscriber::fmt::format::DefaultFields::new(),
            access_line,
        );
        assert_eq!(plain, default);
        assert!(
            plain.ends_with(
                "request method=POST route=\"/v1/topics/{topic}/records\" status=202 \
                 user=\"alice\" latency_us=41 type=\"chat\"\n"
            ),
            "{plain}"
        );
    }

    #[test]
    fn terminal_controls_in_a_message_are_written_as_escapes() {
        let hostile = "bell\x07 escape\x1b[31m red \u{9b}2J done é";
        let plain = line_with(PlainFields, || tracing::warn!("{hostile}"));
        let default = line_with(
            tracing_subscriber::fmt::format::DefaultFields::new(),
            || tracing::warn!("{hostile}"),
        );
        assert_eq!(plain, default);
        assert!(
            plain.contains(r"bell\x07 escape\x1b[31m red \u{9b}2J done é"),
            "{plain}"
        );
        assert!(!plain.contains('\x1b'), "{plain}");
    }

    #[test]
    fn the_clock_writes_rfc_3339_with_microseconds_in_utc() {
        let write = || {
            let mut text = String::new();
            LineClock.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
        let before = SystemTime::now();
        let (first, second) = (write(), write());
        let after = SystemTime::now();
        for text in [&first, &second] {
            assert_eq!(text.len(), "2026-12-07T02:44:48.406556Z".len(), "{text}");
            assert_eq!(&text[10..11], "T");
            assert_eq!(&text[19..20], ".");
            assert!(text.ends_with('Z'), "{text}");
            let at = humantime::parse_rfc3339(text).unwrap();
            // The text is cut to microseconds: at most one below the clock read before it.
            let floor = before - Duration::from_micros(1);
            assert!(floor <= at && at <= after, "{text}");
        }
        assert!(first <= second, "{first} then {second}");
    }

    #[test]
    fn errors_keep_their_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot write the segment")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("disk gone"));
        let record = || tracing::error!(error = &error as &dyn std::error::Error, "failed");
        let plain = line_with(PlainFields, record);
        let default = line_with(
            tracing_subscriber::fmt::format::DefaultFields::new(),
            record,
        );
        assert_eq!(plain, default);
        assert!(plain.contains("disk gone"), "{plain}");
    }
}
