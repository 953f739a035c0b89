//! A conversation's deletion, interrupted at every write and replayed after a reopen, ends with
//! no record of the conversation left, as an uninterrupted one does.

use super::command::{DeleteConversation, MarkRead, SendMessage};
use super::{ChatCommand, Store};

const DELETE_OFFSET: u64 = 10;

/// A store holding conversation `c` (ann, bob) with two messages (one with a client id) and
/// read states for both, and conversation `other` that must survive.
fn populated(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).expect("open the store");
    for (offset, id) in [(0, "c"), (1, "other")] {
        let create = store
            .prepare_conversation("ann", Some(id.into()), None, vec!["bob".into()])
            .expect("a valid conversation");
        let create = ChatCommand::CreateConversation(create);
        store
            .apply_batch(0, &[(offset, create)], u64::MAX)
            .expect("created");
    }
    let mut first = SendMessage::new("c", "bob", "Bob", "hi");
    first.client_message_id = Some("k1".into());
    let second = SendMessage::new("c", "ann", "Ann", "hello");
    let kept = SendMessage::new("other", "ann", "Ann", "stays");
    let read = MarkRead {
        conversation_id: "c".into(),
        user_id: "ann".into(),
        seq: 1,
    };
    let batch = [
        (2, ChatCommand::Send(first)),
        (3, ChatCommand::Send(second)),
        (4, ChatCommand::Send(kept)),
        (5, ChatCommand::Read(read)),
    ];
    store.apply_batch(0, &batch, u64::MAX).expect("sent");
    store.checkpoint().expect("checkpoint");
    store
}

fn delete() -> ChatCommand {
    ChatCommand::DeleteConversation(DeleteConversation {
        conversation_id: "c".into(),
        actor: "ann".into(),
        at: "2030-01-01T00:00:00.000Z".into(),
    })
}

/// Records of `c` left in any tree once a checkpoint ran, and whether `other` is intact.
fn leftovers(store: &Store) -> (usize, bool) {
    store.checkpoint().expect("checkpoint");
    let t = store.trees();
    let of_c = |tree: &sled::Tree, matches: &dyn Fn(&[u8]) -> bool| {
        tree.iter()
            .keys()
            .filter(|k| matches(k.as_ref().expect("a key")))
            .count()
    };
    let starts_c = |k: &[u8]| k.starts_with(b"c\0") || k == b"c";
    let ends_c = |k: &[u8]| k.ends_with(b"\0c");
    let left = of_c(&t.conversations, &starts_c)
        + of_c(&t.activity, &starts_c)
        + of_c(&t.messages, &starts_c)
        + of_c(&t.read_state, &ends_c)
        + t.client_ids.len()
        + (t.message_ids.len() - 1);
    let other =
        store.conversation("other").is_some_and(|c| c.last_seq == 1) && t.messages.len() == 1;
    (left, other)
}

#[test]
fn an_interrupted_deletion_is_finished_by_its_replay() {
    let whole = tempfile::tempdir().expect("temp dir");
    let store = populated(whole.path());
    let applied = store
        .apply_batch(0, &[(DELETE_OFFSET, delete())], u64::MAX)
        .expect("deleted");
    assert!(applied.outcomes[0].1.is_ok());
    assert!(store.conversation("c").is_none());
    assert_eq!(leftovers(&store), (0, true));
    assert_eq!(store.read_state("ann", "c"), 0);

    for writes in 0..12 {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = populated(dir.path());
        let interrupted = store.apply_batch_interrupted(0, &[(DELETE_OFFSET, delete())], writes);
        drop(store);
        let store = crate::testing::reopen(|| Store::open(dir.path()));
        if interrupted.is_ok() {
            assert!(store.conversation("c").is_none(), "writes {writes}");
        } else {
            assert!(
                store.conversation("c").is_some(),
                "writes {writes}: still there"
            );
            store
                .apply_batch(0, &[(DELETE_OFFSET, delete())], u64::MAX)
                .expect("the replay deletes");
        }
        assert!(store.conversation("c").is_none(), "writes {writes}");
        assert_eq!(leftovers(&store), (0, true), "writes {writes}");
    }
}

/// A conversation deleted and then created again with the same id starts from nothing, whether
/// a checkpoint ran between the two or a crash came first: no lastSeq and no read state of the
/// one before, on disk as in memory.
#[test]
fn a_conversation_created_again_after_its_deletion_inherits_nothing() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = populated(dir.path());
        store
            .apply_batch(0, &[(DELETE_OFFSET, delete())], u64::MAX)
            .expect("deleted");
        let store = if crash {
            drop(store);
            crate::testing::reopen(|| Store::open(dir.path()))
        } else {
            store
        };
        let create = store
            .prepare_conversation("ann", Some("c".into()), None, vec!["bob".into()])
            .expect("the id is free again");
        let first = SendMessage::new("c", "bob", "Bob", "again");
        let batch = [
            (DELETE_OFFSET + 1, ChatCommand::CreateConversation(create)),
            (DELETE_OFFSET + 2, ChatCommand::Send(first)),
        ];
        store
            .apply_batch(0, &batch, u64::MAX)
            .expect("created again");
        store.checkpoint().expect("checkpoint");
        drop(store);
        let store = crate::testing::reopen(|| Store::open(dir.path()));
        let c = store.conversation("c").expect("the new conversation");
        assert_eq!(c.last_seq, 1, "crash {crash}");
        assert_eq!(store.read_state("ann", "c"), 0, "crash {crash}");
        assert_eq!(store.read_state("bob", "c"), 1, "crash {crash}");
    }
}
