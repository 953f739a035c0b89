//! What Socket.IO clients send, parsed: Engine.IO 4 packets, and the Socket.IO 5 packets inside
//! their message packets, into the same typed client frames `/ws` clients send, so one reader
//! handles both.
//!
//! Two layers read a packet. The transport ([`transport_packet`]) sees what concerns the
//! connection: the Socket.IO CONNECT with its `auth` payload, the upgrade probe (`2probe`) and
//! the upgrade (`5`); everything else goes to the session's reader ([`session_packet`]): the
//! heartbeat answer (`3`), noop (`6`), the client closing (`1`, or DISCONNECT `41`), and the
//! EVENT packets, `42[<ack id>]["event", {…}]`. API.md's events are `send`, `typing`, `read`,
//! `resume` and `auth` (a fresh token, `{token}`), each with one object argument, the `/ws`
//! frame's fields but `type`; the acknowledgement id becomes the frame's `ref`. An unknown event or a wrong argument is
//! refused with a 400 for its acknowledgement (the connection stays); a packet that is not
//! Socket.IO at all, binary attachments, or a namespace the client never connected breaks the
//! protocol ([`Parsed::Broken`]: the connection closes).
//!
//! Pure parsing: nothing here touches the hub, the store or the transport.

use serde_json::Value;

use crate::api::problem::ApiError;
use crate::api::ws::client_frame::{parse, ClientFrame, Parsed};

/// A packet as the transport sees it.
#[derive(Debug, PartialEq)]
pub(crate) enum TransportPacket<'a> {
    /// Socket.IO CONNECT to `namespace`, with the client's `auth` payload if it sent one.
    Connect {
        namespace: &'a str,
        auth: Option<Value>,
    },
    /// A CONNECT whose payload is not a JSON object.
    BadConnect(String),
    /// `2probe`: a WebSocket asks whether it may take the connection over.
    Probe,
    /// `5`: the client switches to the probed WebSocket.
    Upgrade,
    /// `1`: the client closes the connection.
    Close,
    /// For the session's reader.
    Session,
}

/// Classifies a packet for the transport by its first bytes (only a CONNECT is parsed further).
pub(crate) fn transport_packet(text: &str) -> TransportPacket<'_> {
    match text {
        "2probe" => return TransportPacket::Probe,
        "5" => return TransportPacket::Upgrade,
        "1" => return TransportPacket::Close,
        _ => {}
    }
    let Some(connect) = text.strip_prefix("40") else {
        return TransportPacket::Session;
    };
    let (namespace, payload) = split_namespace(connect);
    let auth = match payload {
        "" => None,
        json => match serde_json::from_str(json) {
            Ok(auth @ Value::Object(_)) => Some(auth),
            Ok(_) => {
                return TransportPacket::BadConnect("the auth payload must be an object".into())
            }
            Err(e) => {
                return TransportPacket::BadConnect(format!("the auth payload is not JSON: {e}"))
            }
        },
    };
    TransportPacket::Connect { namespace, auth }
}

/// The namespace of a Socket.IO packet's remainder (`/admin,…`, or `/` when it names none) and
/// what follows it.
fn split_namespace(rest: &str) -> (&str, &str) {
    if !rest.starts_with('/') {
        return ("/", rest);
    }
    match rest.split_once(',') {
        Some((namespace, rest)) => (namespace, rest),
        None => (rest, ""),
    }
}

/// A packet the session's reader handles, parsed.
pub(crate) fn session_packet(text: &str) -> Parsed {
    match text.as_bytes() {
        b"3" | b"6" => Parsed::Frame(ClientFrame::KeepAlive, None),
        b"1" => Parsed::Frame(ClientFrame::Goodbye, None),
        [b'4', rest @ ..] => socketio_packet(&text[1..], rest),
        _ => Parsed::Broken(format!(
            "not an Engine.IO packet this server accepts: {:?}",
            preview(text)
        )),
    }
}

/// A Socket.IO packet (an Engine.IO message's payload).
fn socketio_packet(text: &str, bytes: &[u8]) -> Parsed {
    match bytes.first() {
        Some(b'2') => {
            let (namespace, rest) = split_namespace(&text[1..]);
            if namespace != "/" {
                return Parsed::Broken(format!("namespace {namespace:?} is not connected"));
            }
            event(rest)
        }
        Some(b'1') => Parsed::Frame(ClientFrame::Goodbye, None),
        // A second CONNECT to `/` changes nothing: the socket is connected.
        Some(b'0') => Parsed::Frame(ClientFrame::KeepAlive, None),
        Some(b'5' | b'6') => Parsed::Broken("binary attachments are not supported".into()),
        _ => Parsed::Broken(format!(
            "not a Socket.IO packet this server accepts: {:?}",
            preview(text)
        )),
    }
}

/// The acknowledgement id leading `rest`, if any, and what follows it; `Err` when the digits
/// are no id (too large).
fn ack_id(rest: &str) -> Result<(Option<Value>, &str), String> {
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return Ok((None, rest));
    }
    let id: u64 = rest[..digits]
        .parse()
        .map_err(|_| "the acknowledgement id is too large".to_owned())?;
    Ok((Some(Value::from(id)), &rest[digits..]))
}

/// The acknowledgement id of an EVENT packet read no further than its header (for refusing a
/// packet too large to parse).
pub(crate) fn event_ack_id(text: &str) -> Option<Value> {
    let (_, rest) = split_namespace(text.strip_prefix("42")?);
    ack_id(rest).ok()?.0
}

/// An EVENT packet's id and `["name", argument]`.
fn event(rest: &str) -> Parsed {
    let (id, data) = match ack_id(rest) {
        Ok(split) => split,
        Err(broken) => return Parsed::Broken(broken),
    };
    let arguments = match serde_json::from_str(data) {
        Ok(Value::Array(arguments)) => arguments,
        Ok(_) => return Parsed::Broken("an event's data is a JSON array".into()),
        Err(e) => return Parsed::Broken(format!("an event's data is not JSON: {e}")),
    };
    let mut arguments = arguments.into_iter();
    let Some(Value::String(name)) = arguments.next() else {
        return Parsed::Broken("an event's data starts with its name".into());
    };
    match client_event(&name, arguments.collect()) {
        Ok(frame) => Parsed::Frame(frame, id),
        Err(error) => Parsed::Refused(id, error),
    }
}

/// The client events of API.md, each with its one object argument checked.
fn client_event(name: &str, arguments: Vec<Value>) -> Result<ClientFrame, ApiError> {
    let kind = match name {
        "send" | "typing" | "read" | "resume" | "auth" => name,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown event {other:?}: expected send, typing, read, resume or auth"
            )))
        }
    };
    let [argument] = <[Value; 1]>::try_from(arguments).map_err(|given| {
        ApiError::BadRequest(format!(
            "{kind} takes one argument, an object; the event gave {}",
            given.len()
        ))
    })?;
    if !argument.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the argument of {kind} must be an object"
        )));
    }
    let what = format!("{kind} event");
    Ok(match kind {
        "send" => ClientFrame::Send(parse(argument, &what)?),
        "typing" => ClientFrame::Typing(parse(argument, &what)?),
        "read" => ClientFrame::Read(parse(argument, &what)?),
        "auth" => ClientFrame::Auth(parse(argument, &what)?),
        _ => ClientFrame::Resume(parse(argument, &what)?),
    })
}

/// The start of a packet, for an error message.
fn preview(text: &str) -> &str {
    let end = text.char_indices().nth(16).map_or(text.len(), |(at, _)| at);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn status(parsed: &Parsed) -> Option<u16> {
        match parsed {
            Parsed::Refused(_, error) => Some(error.status().as_u16()),
            _ => None,
        }
    }

    #[test]
    fn the_transport_sees_connects_probes_upgrades_and_closes() {
        assert_eq!(
            transport_packet(r#"40{"token":"t"}"#),
            TransportPacket::Connect {
                namespace: "/",
                auth: Some(json!({"token":"t"}))
            }
        );
        assert_eq!(
            transport_packet("40"),
            TransportPacket::Connect {
                namespace: "/",
                auth: None
            }
        );
        assert_eq!(
            transport_packet("40/admin,"),
            TransportPacket::Connect {
                namespace: "/admin",
                auth: None
            }
        );
        assert!(matches!(
            transport_packet("40[1]"),
            TransportPacket::BadConnect(_)
        ));
        assert_eq!(transport_packet("2probe"), TransportPacket::Probe);
        assert_eq!(transport_packet("5"), TransportPacket::Upgrade);
        assert_eq!(transport_packet("1"), TransportPacket::Close);
        assert_eq!(transport_packet(r#"42["x"]"#), TransportPacket::Session);
    }

    #[test]
    fn events_parse_into_frames_with_their_ack_id_as_ref() {
        let parsed = session_packet(r#"4212["read",{"conversationId":"c","seq":3}]"#);
        let Parsed::Frame(ClientFrame::Read(read), Some(id)) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!((read.seq, id), (3, json!(12)));
        let parsed = session_packet(r#"42["send",{"conversationId":"c","content":"hi"}]"#);
        assert!(matches!(parsed, Parsed::Frame(ClientFrame::Send(_), None)));
        assert!(matches!(
            session_packet(r#"42["resume",{"conversations":{"c":0}}]"#),
            Parsed::Frame(ClientFrame::Resume(_), None)
        ));
        assert!(matches!(
            session_packet(r#"427["auth",{"token":"t"}]"#),
            Parsed::Frame(ClientFrame::Auth(auth), Some(_)) if auth.token == "t"
        ));
        assert!(matches!(
            session_packet("3"),
            Parsed::Frame(ClientFrame::KeepAlive, None)
        ));
        assert!(matches!(
            session_packet("41"),
            Parsed::Frame(ClientFrame::Goodbye, None)
        ));
    }

    #[test]
    fn unknown_events_and_wrong_arguments_are_refused_with_their_id() {
        for text in [
            r#"427["shout",{}]"#,
            r#"427["send"]"#,
            r#"427["send",{},{}]"#,
            r#"427["send","hi"]"#,
            r#"427["send",{"conversationId":"c"}]"#,
            r#"427["read",{"conversationId":"c","seq":-1}]"#,
        ] {
            let parsed = session_packet(text);
            assert_eq!(status(&parsed), Some(400), "{text}: {parsed:?}");
            assert!(matches!(parsed, Parsed::Refused(Some(_), _)), "{text}");
        }
    }

    #[test]
    fn an_oversized_event_still_names_its_ack_id() {
        assert_eq!(event_ack_id(r#"4231["send",{"#), Some(json!(31)));
        assert_eq!(event_ack_id(r#"42["send",{"#), None);
        assert_eq!(event_ack_id("3"), None);
    }

    #[test]
    fn what_is_not_socket_io_breaks_the_protocol() {
        for text in [
            "",
            "x",
            "4",
            "49",
            r#"451-["send",{"_placeholder":true,"num":0}]"#,
            r#"42/admin,["send",{}]"#,
            r#"42{"a":1}"#,
            r#"42[1]"#,
            "42[",
            "4299999999999999999999[\"send\",{}]",
        ] {
            assert!(
                matches!(session_packet(text), Parsed::Broken(_)),
                "{text:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text is a frame, a 400 or a broken protocol, never a panic.
        #[test]
        fn any_text_is_a_frame_a_400_or_broken(text in "4?2?[0-9]{0,3}.{0,48}") {
            if let Some(code) = status(&session_packet(&text)) {
                prop_assert_eq!(code, 400);
            }
            let _ = transport_packet(&text);
        }
    }
}
