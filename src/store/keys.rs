//! Key layouts of the store's sled trees (see docs/architecture.md, "Store trees").
//!
//! Conversation ids and user ids never contain NUL, so `0x00` separates key parts and a
//! conversation's messages are one prefix.

use super::error::{Result, StoreError};

/// `messages`: conversation ++ 0x00 ++ seq (u64 BE), the key of the chunk whose first message is
/// at that seq (see [`unwritten`](super::unwritten)).
pub(super) fn message(conversation: &str, seq: u64) -> Vec<u8> {
    let mut key = message_prefix(conversation);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The seq of a `messages` key.
pub(super) fn message_seq(key: &[u8]) -> Result<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::corrupt("messages", "malformed key"))
}

/// The prefix of every key of a conversation's messages.
pub(super) fn message_prefix(conversation: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(conversation.len() + 9);
    key.extend_from_slice(conversation.as_bytes());
    key.push(0);
    key
}

/// A message's location in the id index ([`id_index`](super::id_index)): the `messages` key
/// (conversation ++ 0x00 ++ seq) ++ the source offset (u64 BE) of the send record that stored
/// it, so a replay of that record recognizes its own message and a second record with the same
/// id does not.
pub(super) fn message_id_value(conversation: &str, seq: u64, source_offset: u64) -> Vec<u8> {
    let mut value = message(conversation, seq);
    value.extend_from_slice(&source_offset.to_be_bytes());
    value
}

/// Decodes a location into (conversation, seq).
pub(super) fn decode_location(raw: &[u8]) -> Result<(String, u64)> {
    decode_message_id(raw).map(|(conversation, seq, _)| (conversation, seq))
}

/// Decodes a location into (conversation, seq, source offset); locations written before
/// the offset was recorded have none.
pub(super) fn decode_message_id(raw: &[u8]) -> Result<(String, u64, Option<u64>)> {
    let bad = || StoreError::corrupt("message id index", "malformed location");
    let split = raw.iter().position(|b| *b == 0).ok_or_else(bad)?;
    let conversation = std::str::from_utf8(&raw[..split]).map_err(|_| bad())?;
    let rest = &raw[split + 1..];
    let u64_at = |at: usize| -> Result<u64> {
        rest.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(bad)
    };
    let seq = u64_at(0)?;
    let source = match rest.len() {
        8 => None,
        16 => Some(u64_at(8)?),
        _ => return Err(bad()),
    };
    Ok((conversation.to_owned(), seq, source))
}

/// `client_ids`: sender ++ 0x00 ++ conversation ++ 0x00 ++ clientMessageId.
pub(super) fn client_id(sender: &str, conversation: &str, client_message_id: &str) -> Vec<u8> {
    let mut key =
        Vec::with_capacity(sender.len() + conversation.len() + client_message_id.len() + 2);
    key.extend_from_slice(sender.as_bytes());
    key.push(0);
    key.extend_from_slice(conversation.as_bytes());
    key.push(0);
    key.extend_from_slice(client_message_id.as_bytes());
    key
}

/// `client_ids` value: message id ++ 0x00 ++ partition (u32 BE) ++ source offset (u64 BE).
pub(super) fn client_send_value(message_id: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(message_id.len() + 13);
    value.extend_from_slice(message_id.as_bytes());
    value.push(0);
    value.extend_from_slice(&partition.to_be_bytes());
    value.extend_from_slice(&offset.to_be_bytes());
    value
}

/// Decodes a `client_ids` value; a bare message id (older entries) has no source.
pub(super) fn decode_client_send(raw: &[u8]) -> Result<super::queries::ClientSend> {
    let bad = || StoreError::corrupt("client_ids", "malformed value");
    let (id, source) = match raw.iter().position(|b| *b == 0) {
        None => (raw, None),
        Some(split) => {
            let rest = &raw[split + 1..];
            let partition: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            let offset: [u8; 8] = rest
                .get(4..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            let source = (u32::from_be_bytes(partition), u64::from_be_bytes(offset));
            (&raw[..split], Some(source))
        }
    };
    let message_id = std::str::from_utf8(id).map_err(|_| bad())?.to_owned();
    Ok(super::queries::ClientSend { message_id, source })
}

/// `read_state`: user ++ 0x00 ++ conversation.
pub(super) fn read_state(user: &str, conversation: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + conversation.len() + 1);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(conversation.as_bytes());
    key
}

/// Splits a `read_state` key into (user, conversation).
pub(super) fn decode_read_state(raw: &[u8]) -> Result<(String, String)> {
    let bad = || StoreError::corrupt("read_state", "malformed key");
    let split = raw.iter().position(|b| *b == 0).ok_or_else(bad)?;
    let user = std::str::from_utf8(&raw[..split]).map_err(|_| bad())?;
    let conversation = std::str::from_utf8(&raw[split + 1..]).map_err(|_| bad())?;
    Ok((user.to_owned(), conversation.to_owned()))
}

/// `outbox`: partition (u32 BE) ++ source offset (u64 BE) ++ index (u32 BE).
pub(super) fn outbox(partition: u32, source_offset: u64, index: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(&source_offset.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Splits an `outbox` key into (partition, source offset, index).
pub(super) fn decode_outbox(raw: &[u8]) -> Result<(u32, u64, u32)> {
    let bad = || StoreError::corrupt("outbox", "malformed key");
    if raw.len() != 16 {
        return Err(bad());
    }
    let partition = <[u8; 4]>::try_from(&raw[..4]).map_err(|_| bad())?;
    let offset = <[u8; 8]>::try_from(&raw[4..12]).map_err(|_| bad())?;
    let index = <[u8; 4]>::try_from(&raw[12..]).map_err(|_| bad())?;
    Ok((
        u32::from_be_bytes(partition),
        u64::from_be_bytes(offset),
        u32::from_be_bytes(index),
    ))
}

/// Decodes a u64 BE value.
pub(super) fn decode_u64(tree: &str, raw: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt(tree, format!("u64 value of {} bytes", raw.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_messages_sort_by_seq() {
        let key = message("conv", 258);
        assert_eq!(decode_location(&key).unwrap(), ("conv".to_owned(), 258));
        let value = message_id_value("conv", 258, 7);
        assert_eq!(
            decode_message_id(&value).unwrap(),
            ("conv".to_owned(), 258, Some(7))
        );
        assert!(decode_message_id(b"conv").is_err());
        assert!(message("conv", 9) < message("conv", 10));
        assert!(
            message("c", u64::MAX) < message("c.", 0),
            "prefixes do not interleave"
        );
        let rs = read_state("alice", "conv");
        assert_eq!(
            decode_read_state(&rs).unwrap(),
            ("alice".to_owned(), "conv".to_owned())
        );
        assert_eq!(decode_outbox(&outbox(3, 7, 1)).unwrap(), (3, 7, 1));
        assert!(outbox(0, 255, 0) < outbox(0, 256, 0));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// Ids as the store writes them: never a NUL (the key separator).
        fn id() -> impl Strategy<Value = String> {
            "[^\\x00]{0,24}"
        }

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(any::<u8>(), 0..48)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Every key and value the store writes decodes back to what was written.
            #[test]
            fn encodings_round_trip(
                conversation in id(),
                user in id(),
                message_id in id(),
                seq in any::<u64>(),
                offset in any::<u64>(),
                partition in any::<u32>(),
                index in any::<u32>(),
            ) {
                let value = message_id_value(&conversation, seq, offset);
                prop_assert_eq!(
                    decode_message_id(&value).unwrap(),
                    (conversation.clone(), seq, Some(offset))
                );
                let location = message(&conversation, seq);
                prop_assert_eq!(decode_location(&location).unwrap(), (conversation.clone(), seq));
                let send = decode_client_send(&client_send_value(&message_id, partition, offset))
                    .unwrap();
                prop_assert_eq!(send.message_id, message_id);
                prop_assert_eq!(send.source, Some((partition, offset)));
                prop_assert_eq!(
                    decode_read_state(&read_state(&user, &conversation)).unwrap(),
                    (user, conversation)
                );
                prop_assert_eq!(
                    decode_outbox(&outbox(partition, offset, index)).unwrap(),
                    (partition, offset, index)
                );
                prop_assert_eq!(decode_u64("t", &seq.to_be_bytes()).unwrap(), seq);
            }

            /// Random bytes are a typed corrupt error or a value, never a panic.
            #[test]
            fn random_bytes_never_panic(raw in bytes()) {
                let corrupt = |r: Result<()>| match r {
                    Ok(()) => true,
                    Err(e) => matches!(e, StoreError::Corrupt { .. }),
                };
                prop_assert!(corrupt(decode_message_id(&raw).map(drop)));
                prop_assert!(corrupt(decode_location(&raw).map(drop)));
                prop_assert!(corrupt(decode_client_send(&raw).map(drop)));
                prop_assert!(corrupt(decode_read_state(&raw).map(drop)));
                prop_assert!(corrupt(decode_outbox(&raw).map(drop)));
                prop_assert!(corrupt(decode_u64("t", &raw).map(drop)));
            }

            /// A valid value cut short or lengthened is an error or a value, never a panic.
            #[test]
            fn truncated_and_extended_values_never_panic(
                conversation in id(),
                seq in any::<u64>(),
                cut in any::<usize>(),
                tail in bytes(),
            ) {
                let mut value = message_id_value(&conversation, seq, 9);
                value.truncate(cut % (value.len() + 1));
                let _ = decode_message_id(&value);
                value.extend_from_slice(&tail);
                let _ = decode_message_id(&value);
                let _ = decode_client_send(&value);
            }
        }
    }
}
