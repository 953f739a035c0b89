//! The reader of one session: client frames in, answers out through the writer.
//!
//! Each text frame passes its size (`ws.maxFrameBytes` → `error` 413) and the session's frame
//! rate ([`FrameRate`]: over it → `error` 429 with the frame's `ref`), is parsed
//! (`client_frame.rs`: bad JSON, a missing field or an unknown `type` → `error` 400) and handled
//! on the same paths as HTTP: `send` through [`send_message`] (→ `ack` with the 202 body's
//! fields), `read` through [`mark_read_as`] (→ `ack`), `typing` through the hub, `resume` handed
//! to the writer (→ `ack` once replayed), `auth` checked by [`expiry::renew`] and handed to the
//! writer (→ `ack` with `expiresAt`), `ping` → `pong`. An error answers with the status the
//! HTTP route would give; the session stays open. The client's `ref` is echoed in every answer.
//! Once the session's token has expired no frame is handled: the session closes (4001).
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::client_frame::{
    parse_client_frame, reference_of, ClientFrame, Parsed, Refused, ResumeFrame, SendFrame,
    TypingFrame,
};
use super::dialect::Dialect;
use super::expiry;
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

/// What becomes of a handled frame.
enum Answer {
    /// This reply goes to the client.
    Reply(Frame),
    /// A send's ack, which the writer may hold for the session's own copy of the message.
    Sent(Control),
    /// The writer answers once it has done its part (resume, join, leave).
    ByWriter,
    /// Nothing (a `/ws` `typing`); a SignalR invocation with an id still gets its completion.
    Nothing,
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
                // Not handled, even if it raced the writer's timer: the token is over.
                Some(Ok(Message::Text(_) | Message::Binary(_)))
                    if expiry::has_expired(self.caller.expires_at) =>
                {
                    self.handle.close(CloseReason::TokenExpired);
                    break;
                }
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
            Ok(Answer::Sent(ack)) => self.hand_over(ack).await,
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
            ClientFrame::Send(send) => self.send(send, reference).await.map(Answer::Sent),
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
            ClientFrame::Auth(auth) => {
                self.renew(&auth.token, reference).await?;
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

    /// Sends the message; returns its ack for the writer.
    async fn send(&self, send: SendFrame, reference: Option<Value>) -> Result<Control, ApiError> {
        let body = SendBody {
            content: send.content,
            client_message_id: send.client_message_id,
            reply_to: send.reply_to,
            mentions: send.mentions,
            ..SendBody::default()
        };
        let ack = send_message(&self.state, &self.caller, send.conversation_id, body).await?;
        let copy_coming = !self
            .state
            .chat()?
            .pipeline
            .has_applied(ack.partition, ack.offset);
        let fields = match serde_json::to_value(&ack) {
            Ok(Value::Object(fields)) => fields,
            Ok(other) => {
                return Err(ApiError::Internal(format!(
                    "an ack is not an object: {other}"
                )))
            }
            Err(e) => return Err(ApiError::Internal(format!("an ack did not serialize: {e}"))),
        };
        Ok(Control::SendAck {
            ack: Frame::new(ServerEvent::Ack { reference, fields }),
            message_id: ack.id,
            conversation: ack.conversation_id,
            copy_coming,
        })
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

    /// Takes a fresh token's identity (same user, not expired) and has the writer move the
    /// session's deadline to its expiry and answer.
    async fn renew(&mut self, token: &str, reference: Option<Value>) -> Result<(), ApiError> {
        let renewed = expiry::renew(&self.state, &self.caller, token).await?;
        let expires_at = renewed.expires_at;
        self.caller = renewed;
        let renew = Control::Renew {
            expires_at,
            reference,
        };
        self.hand_over(renew).await;
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
