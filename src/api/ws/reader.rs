//! The reader of one session: client frames in, answers out through the writer.
//!
//! Each text frame passes its size (`ws.maxFrameBytes` → `error` 413) and the session's frame
//! rate ([`FrameRate`]: over it → `error` 429 with the frame's `ref`), is parsed (bad
//! JSON, a missing field or an unknown `type` → `error` 400) and handled on the same paths as
//! HTTP: `send` through [`send_message`] (→ `ack` with the 202 body's fields), `read` through
//! [`mark_read_as`] (→ `ack`), `typing` through the hub, `resume` handed to the writer (→ `ack`
//! once replayed), `ping` → `pong`. An error answers with the status the HTTP route would give;
//! the session stays open. The client's `ref` is echoed in every answer.
//!
//! The reader stops handling frames when the session closes, when the client leaves (the
//! session closes) or when the server shuts down (the session stays open: its writer still
//! delivers until the hub closes it with 1001); then it only reads on until the close handshake
//! is done. A frame above the hard cap (`ws.hardFrameBytes`) is not read at all:
//! the session closes with 1009. This module writes nothing to the socket.
//!
//! A SignalR session ([`Dialect::Signalr`]) goes through the same handling: its handshake is
//! answered first (the queue opens then), its invocations are parsed into the same frames
//! (`api::signalr::protocol`) with their invocation id as the `ref`, every invocation with an id
//! gets its completion, and `JoinConversation` / `LeaveConversation` are handed to the writer.
//! A client that breaks the protocol (a malformed record, a bad handshake, a binary or
//! oversized message) gets SignalR's close record with the reason, and the session closes
//! (1002).
//!
//! A Socket.IO session ([`Dialect::SocketIo`]) likewise: its packets (`api::socketio::protocol`)
//! become the same frames with their acknowledgement id as the `ref`, every event with an id
//! gets its acknowledgement, an oversized packet is refused (413) as on `/ws`, and a packet that
//! is not Socket.IO, or binary, closes the session (1002). Its CONNECT was handled before the
//! session began (`api::socketio`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::dialect::Dialect;
use super::frame_rate::FrameRate;
use super::writer::{Control, CLOSE_TIMEOUT};
use crate::api::conversations::{mark_read_as, require_participant};
use crate::api::messages::{send_message, SendBody};
use crate::api::problem::ApiError;
use crate::api::signalr::codec as signalr;
use crate::api::signalr::protocol;
use crate::api::socketio::protocol as socketio;
use crate::api::AppState;
use crate::auth::Identity;
use crate::hub::{frame, CloseReason, Frame, ServerEvent, SessionHandle};

/// `{"type":"send",…}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendFrame {
    pub(crate) conversation_id: String,
    pub(crate) content: String,
    pub(crate) client_message_id: Option<String>,
    pub(crate) reply_to: Option<String>,
    #[serde(default)]
    pub(crate) mentions: Vec<String>,
}

/// `{"type":"typing","conversationId","typing"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TypingFrame {
    pub(crate) conversation_id: String,
    pub(crate) typing: bool,
}

/// `{"type":"read","conversationId","seq"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadFrame {
    pub(crate) conversation_id: String,
    pub(crate) seq: u64,
}

/// `{"type":"resume","conversations":{id: lastSeenSeq}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ResumeFrame {
    pub(crate) conversations: BTreeMap<String, u64>,
}

/// A client frame, parsed and typed: everything [`parse_client_frame`] accepts from `/ws`
/// clients, and what SignalR clients invoke (`api::signalr::protocol`).
#[derive(Debug)]
pub(crate) enum ClientFrame {
    Send(SendFrame),
    Read(ReadFrame),
    Typing(TypingFrame),
    Resume(ResumeFrame),
    Ping,
    /// SignalR `JoinConversation`: hear this conversation's events from now on.
    Join(String),
    /// SignalR `LeaveConversation`.
    Leave(String),
    /// SignalR's ping or stream cancellation: nothing to do but note the client is there.
    KeepAlive,
    /// SignalR's close record: the client is leaving.
    Goodbye,
}

/// One client message of a protocol that is not `/ws`'s (a SignalR record, a Socket.IO
/// packet), parsed.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A frame to handle, with the id its answer goes to (none: no answer).
    Frame(ClientFrame, Option<Value>),
    /// A well-formed request that cannot be carried out; answered with its id, if any.
    Refused(Option<Value>, ApiError),
    /// The client broke the protocol: close the connection with this error.
    Broken(String),
}

/// What becomes of a handled frame.
enum Answer {
    /// This reply goes to the client.
    Reply(Frame),
    /// The writer answers once it has done its part (resume, join, leave).
    ByWriter,
    /// Nothing (a `/ws` `typing`); a SignalR invocation with an id still gets its completion.
    Nothing,
}

/// A frame refused before it is handled: the error, and the client's `ref` if the frame was a
/// JSON object that had one.
#[derive(Debug)]
struct Refused {
    reference: Option<Value>,
    error: ApiError,
}

/// Parses a text frame into a typed client frame and its `ref`. Any text gives a frame or a
/// 400 naming what is wrong (bad JSON, not an object, a missing or mistyped field, an unknown
/// `type`); nothing here panics or nests deeper than serde_json's recursion limit.
fn parse_client_frame(text: &str) -> Result<(ClientFrame, Option<Value>), Refused> {
    let refused = |reference: Option<Value>, detail: String| Refused {
        reference,
        error: ApiError::BadRequest(detail),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return Err(refused(None, "a frame is a JSON object with a type".into())),
        Err(e) => return Err(refused(None, format!("invalid JSON: {e}"))),
    };
    let reference = value.get("ref").cloned();
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return Err(refused(reference, "invalid type: not a string".into())),
        None => return Err(refused(reference, "missing field `type`".into())),
    };
    let frame = match kind.as_str() {
        "send" => parse(value, "send frame").map(ClientFrame::Send),
        "read" => parse(value, "read frame").map(ClientFrame::Read),
        "typing" => parse(value, "typing frame").map(ClientFrame::Typing),
        "resume" => parse(value, "resume frame").map(ClientFrame::Resume),
        "ping" => Ok(ClientFrame::Ping),
        other => Err(ApiError::BadRequest(format!(
            "unknown type {other:?}: expected send, typing, read, resume or ping"
        ))),
    };
    match frame {
        Ok(frame) => Ok((frame, reference)),
        Err(error) => Err(Refused { reference, error }),
    }
}

/// One session's reader; [`run`](Reader::run) until the session or the server stops.
pub(super) struct Reader {
    pub state: AppState,
    pub caller: Identity,
    pub handle: SessionHandle,
    pub control: mpsc::Sender<Control>,
    pub heard: Arc<AtomicBool>,
    pub frame_rate: FrameRate,
    /// The client's first frame has been handled (and the writer told so).
    pub spoke: bool,
    /// The protocol the client speaks.
    pub dialect: Dialect,
    /// A SignalR client's handshake has been accepted.
    pub handshaken: bool,
}

impl Reader {
    /// Handles client frames until the session closes, the client leaves or the server stops;
    /// then drops `handling` (the server waits for that on shutdown) and reads on, discarding,
    /// until the close handshake is done.
    pub(super) async fn run<St>(mut self, mut stream: St, handling: TaskTrackerToken)
    where
        St: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let shutdown = self.state.shutdown().clone();
        loop {
            let next = tokio::select! {
                biased;
                () = self.handle.closed() => break,
                () = shutdown.cancelled() => break,
                next = stream.next() => next,
            };
            self.heard.store(true, Ordering::Relaxed);
            match next {
                Some(Ok(Message::Text(text))) => match self.dialect {
                    Dialect::Tidings => {
                        self.on_text(text.as_str()).await;
                        self.open_queue().await;
                    }
                    Dialect::Signalr | Dialect::SocketIo => {
                        // Boxed: these paths' state would otherwise enlarge every session's
                        // reader task, `/ws` ones included.
                        let handled = Box::pin(self.on_protocol_text(text.as_str())).await;
                        if let Err(broken) = handled {
                            self.break_off(broken).await;
                            break;
                        }
                    }
                },
                Some(Ok(Message::Binary(_))) if self.dialect != Dialect::Tidings => {
                    self.break_off("this server speaks JSON in text messages only".into())
                        .await;
                    break;
                }
                Some(Ok(Message::Binary(_))) => {
                    let refused = ApiError::BadRequest("send JSON text frames, not binary".into());
                    self.refuse(None, &refused).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    self.handle.close(CloseReason::ClientGone);
                    return;
                }
                Some(Err(e)) => {
                    self.handle.close(reason_of(e));
                    return;
                }
            }
        }
        drop(handling);
        drain(&mut stream, &self.handle).await;
    }

    /// After the first frame (a `resume`, usually, now handed over), the writer lets the queue
    /// flow.
    async fn open_queue(&mut self) {
        if !self.spoke {
            self.spoke = true;
            self.hand_over(Control::Open).await;
        }
    }

    async fn on_text(&mut self, text: &str) {
        let ws = &self.state.config().ws;
        if text.len() > ws.max_frame_bytes {
            let refused = ApiError::PayloadTooLarge(format!(
                "the frame is {} bytes; the limit is {}",
                text.len(),
                ws.max_frame_bytes
            ));
            return self.refuse(None, &refused).await;
        }
        if let Err(refused) = self.frame_rate.admit() {
            return self.refuse(reference_of(text).as_ref(), &refused).await;
        }
        let (frame, reference) = match parse_client_frame(text) {
            Ok(parsed) => parsed,
            Err(Refused { reference, error }) => {
                return self.refuse(reference.as_ref(), &error).await;
            }
        };
        self.handle_frame(frame, reference).await;
    }

    /// The text of a SignalR or Socket.IO connection; `Err` when the client broke the
    /// protocol (the connection then closes with that error).
    async fn on_protocol_text(&mut self, text: &str) -> Result<(), String> {
        let max = self.state.config().ws.max_frame_bytes;
        let too_large = || format!("the message is {} bytes; the limit is {max}", text.len());
        if self.dialect == Dialect::SocketIo {
            if text.len() > max {
                // As on `/ws`: refused, and the session stays.
                let refused = ApiError::PayloadTooLarge(too_large());
                let id = socketio::event_ack_id(text);
                self.refuse(id.as_ref(), &refused).await;
                return Ok(());
            }
            return self.on_parsed(socketio::session_packet(text)).await;
        }
        if text.len() > max {
            return Err(too_large());
        }
        let records = if self.handshaken {
            text
        } else {
            let rest = protocol::handshake(text)?;
            self.handshaken = true;
            self.hand_over(Control::Text(signalr::handshake_accepted()))
                .await;
            self.hand_over(Control::Open).await;
            if rest.is_empty() {
                return Ok(());
            }
            rest
        };
        for record in protocol::records(records) {
            self.on_parsed(record).await?;
        }
        Ok(())
    }

    /// Handles one parsed record or packet within the session's frame rate.
    async fn on_parsed(&mut self, parsed: Parsed) -> Result<(), String> {
        match parsed {
            Parsed::Frame(frame, id) => match self.frame_rate.admit() {
                Ok(()) => self.handle_frame(frame, id).await,
                Err(refused) => self.refuse(id.as_ref(), &refused).await,
            },
            Parsed::Refused(id, refused) => self.refuse(id.as_ref(), &refused).await,
            Parsed::Broken(broken) => return Err(broken),
        }
        Ok(())
    }

    /// Ends a session whose client broke the protocol: for SignalR the reason goes out in its
    /// close record (or handshake answer); then the connection closes (1002).
    async fn break_off(&self, broken: String) {
        tracing::debug!(user = %self.caller.user_id, error = %broken, "protocol error; session closed");
        if self.dialect == Dialect::Signalr {
            let record = if self.handshaken {
                signalr::close(&broken, false)
            } else {
                signalr::handshake_refused(&broken)
            };
            self.hand_over(Control::Text(record)).await;
        }
        self.hand_over(Control::Close(CloseReason::ProtocolError))
            .await;
    }

    /// Handles a parsed frame and answers it (or has the writer answer it).
    async fn handle_frame(&mut self, frame: ClientFrame, reference: Option<Value>) {
        match self.dispatch(frame, reference.clone()).await {
            Ok(Answer::Reply(answer)) => self.reply(answer).await,
            Ok(Answer::ByWriter) => {}
            Ok(Answer::Nothing) => {
                if self.dialect.answers_every_request() && reference.is_some() {
                    self.reply(frame::ack(reference)).await;
                }
            }
            Err(refused) => self.refuse(reference.as_ref(), &refused).await,
        }
    }

    /// Handles one client frame; says how it is answered.
    async fn dispatch(
        &mut self,
        frame: ClientFrame,
        reference: Option<Value>,
    ) -> Result<Answer, ApiError> {
        match frame {
            ClientFrame::Send(send) => self.send(send, reference).await.map(Answer::Reply),
            ClientFrame::Read(read) => {
                let user = self.caller.user_id.clone();
                mark_read_as(&self.state, &user, read.conversation_id, read.seq).await?;
                Ok(Answer::Reply(frame::ack(reference)))
            }
            ClientFrame::Typing(typing) => {
                self.typing(typing)?;
                Ok(Answer::Nothing)
            }
            ClientFrame::Resume(resume) => {
                self.resume(resume, reference).await?;
                Ok(Answer::ByWriter)
            }
            ClientFrame::Ping => Ok(Answer::Reply(frame::pong(reference.as_ref()))),
            ClientFrame::Join(conversation) => {
                require_participant(self.state.chat()?, &self.caller.user_id, &conversation)?;
                let join = Control::Join {
                    conversation,
                    reference,
                };
                self.hand_over(join).await;
                Ok(Answer::ByWriter)
            }
            ClientFrame::Leave(conversation) => {
                let leave = Control::Leave {
                    conversation,
                    reference,
                };
                self.hand_over(leave).await;
                Ok(Answer::ByWriter)
            }
            ClientFrame::KeepAlive => Ok(Answer::Nothing),
            ClientFrame::Goodbye => {
                self.handle.close(CloseReason::ClientGone);
                Ok(Answer::Nothing)
            }
        }
    }

    async fn send(&self, send: SendFrame, reference: Option<Value>) -> Result<Frame, ApiError> {
        let body = SendBody {
            content: send.content,
            client_message_id: send.client_message_id,
            reply_to: send.reply_to,
            mentions: send.mentions,
            ..SendBody::default()
        };
        let ack = send_message(&self.state, &self.caller, send.conversation_id, body).await?;
        let fields = match serde_json::to_value(&ack) {
            Ok(Value::Object(fields)) => fields,
            Ok(other) => {
                return Err(ApiError::Internal(format!(
                    "an ack is not an object: {other}"
                )))
            }
            Err(e) => return Err(ApiError::Internal(format!("an ack did not serialize: {e}"))),
        };
        Ok(Frame::new(ServerEvent::Ack { reference, fields }))
    }

    fn typing(&self, typing: TypingFrame) -> Result<(), ApiError> {
        let chat = self.state.chat()?;
        let user = &self.caller.user_id;
        require_participant(chat, user, &typing.conversation_id)?;
        let others: Vec<String> = chat
            .store
            .participants(&typing.conversation_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p != user)
            .collect();
        self.state
            .hub()
            .typing(user, &typing.conversation_id, typing.typing, others);
        Ok(())
    }

    /// Hands the conversations the user is in to the writer; names the others in a 404 error.
    async fn resume(&self, resume: ResumeFrame, reference: Option<Value>) -> Result<(), ApiError> {
        let chat = self.state.chat()?;
        let (known, unknown): (Vec<_>, Vec<_>) = resume
            .conversations
            .into_iter()
            .partition(|(id, _)| chat.store.is_participant(id, &self.caller.user_id));
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.into_iter().map(|(id, _)| id).collect();
            let refused = ApiError::NotFound(format!("conversations {names:?}"));
            if self.dialect.answers_every_request() {
                // One answer per invocation: the refusal, and nothing replayed.
                return Err(refused);
            }
            self.refuse(reference.as_ref(), &refused).await;
        }
        let resume = Control::Resume {
            conversations: known,
            reference,
        };
        self.hand_over(resume).await;
        Ok(())
    }

    /// Hands an answer to the writer; gives up when the session closes or the server stops
    /// (a writer stuck on a client that reads nothing must not hold the shutdown).
    async fn reply(&self, answer: Frame) {
        self.hand_over(Control::Reply(answer)).await;
    }

    async fn hand_over(&self, control: Control) {
        tokio::select! {
            // A closed writer means the session is over: nothing left to answer.
            _ = self.control.send(control) => {}
            () = self.handle.closed() => {}
            () = self.state.shutdown().cancelled() => {}
        }
    }

    async fn refuse(&self, reference: Option<&Value>, refused: &ApiError) {
        let status = refused.status().as_u16();
        self.reply(frame::error(reference, status, &refused.detail()))
            .await;
    }
}

/// The frame's `ref`, if it is JSON with one: a refusal made before the frame is handled (its
/// rate) still names the frame it refuses. Only the `ref` is kept; the rest is skipped.
fn reference_of(text: &str) -> Option<Value> {
    #[derive(Deserialize)]
    struct Reference {
        #[serde(rename = "ref")]
        reference: Option<Value>,
    }
    serde_json::from_str::<Reference>(text).ok()?.reference
}

/// A typed client frame (`kind` names it), or 400 naming what is wrong (`missing field
/// `conversationId``).
pub(crate) fn parse<T: DeserializeOwned>(value: Value, kind: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("invalid {kind}: {e}")))
}

/// Reads and discards until the client answers the close frame (or leaves), at most
/// [`CLOSE_TIMEOUT`] after the session closed. Dropping the read half at once would close the
/// connection under a client still writing (a pong, say) before it has read the close frame.
async fn drain<St>(stream: &mut St, handle: &SessionHandle)
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let deadline = async {
        handle.closed().await;
        tokio::time::sleep(CLOSE_TIMEOUT).await;
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return,
            next = stream.next() => match next {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Why a read error ends the session: a frame above the hard cap (1009), or a broken
/// connection.
fn reason_of(error: axum::Error) -> CloseReason {
    let inner = error.into_inner();
    match inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_)) => CloseReason::TooLarge,
        _ => CloseReason::ClientGone,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn status(text: &str) -> Result<&'static str, u16> {
        match parse_client_frame(text) {
            Ok((ClientFrame::Send(_), _)) => Ok("send"),
            Ok((ClientFrame::Read(_), _)) => Ok("read"),
            Ok((ClientFrame::Typing(_), _)) => Ok("typing"),
            Ok((ClientFrame::Resume(_), _)) => Ok("resume"),
            Ok((ClientFrame::Ping, _)) => Ok("ping"),
            Ok((other, _)) => panic!("/ws has no {other:?} frame"),
            Err(refused) => Err(refused.error.status().as_u16()),
        }
    }

    #[test]
    fn frames_parse_by_type_and_keep_their_ref() {
        let (frame, reference) =
            parse_client_frame(r#"{"type":"read","conversationId":"c","seq":3,"ref":[1]}"#)
                .unwrap();
        assert!(matches!(frame, ClientFrame::Read(ReadFrame { seq: 3, .. })));
        assert_eq!(reference, Some(json!([1])));
        assert_eq!(status(r#"{"type":"ping"}"#), Ok("ping"));
        let refused = parse_client_frame(r#"{"type":"read","ref":"r"}"#).unwrap_err();
        assert_eq!(refused.reference, Some(json!("r")));
        assert!(refused.error.detail().contains("conversationId"));
        assert_eq!(status("[1]"), Err(400));
        assert_eq!(status(r#"{"type":7}"#), Err(400));
        assert_eq!(status(r#"{"type":"shout"}"#), Err(400));
    }

    #[test]
    fn a_frame_nested_100_000_deep_is_a_400_not_a_stack_overflow() {
        let deep = format!(r#"{{"type":"ping","ref":{}}}"#, "[".repeat(100_000));
        assert_eq!(status(&deep), Err(400));
        let closed = format!(
            r#"{{"type":"ping","ref":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(status(&closed), Err(400));
    }

    /// JSON objects shaped like client frames, with fields of random type and value.
    fn frame_like() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(|b| json!(b)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(|s| json!(s)),
            Just(json!(u64::MAX)),
            Just(json!(-1)),
            Just(json!({"c": 1})),
            Just(json!(["x"])),
        ];
        let kind = prop_oneof![
            Just("send"),
            Just("read"),
            Just("typing"),
            Just("resume"),
            Just("ping"),
            Just("x")
        ];
        let name = prop_oneof![
            Just("conversationId"),
            Just("content"),
            Just("seq"),
            Just("typing"),
            Just("conversations"),
            Just("mentions"),
            Just("clientMessageId"),
            Just("replyTo"),
            Just("ref"),
            Just("type"),
        ];
        (kind, proptest::collection::vec((name, field), 0..6)).prop_map(|(kind, fields)| {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), json!(kind));
            for (name, value) in fields {
                object.insert(name.into(), value);
            }
            Value::Object(object).to_string()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text is a typed frame or a 400, never a panic.
        #[test]
        fn any_text_is_a_frame_or_a_400(text in ".{0,64}") {
            if let Err(code) = status(&text) {
                prop_assert_eq!(code, 400);
            }
        }

        /// Any bytes read as text (lossily, as a client could send them) are a frame or a 400.
        #[test]
        fn any_bytes_are_a_frame_or_a_400(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Err(code) = status(&String::from_utf8_lossy(&raw)) {
                prop_assert_eq!(code, 400);
            }
        }

        /// Frames of the right shape with fields of the wrong type are a frame or a 400.
        #[test]
        fn frame_shaped_objects_are_a_frame_or_a_400(text in frame_like()) {
            if let Err(code) = status(&text) {
                prop_assert_eq!(code, 400);
            }
        }
    }
}
