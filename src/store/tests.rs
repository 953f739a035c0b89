//! Unit tests of the store on its own database in a temporary directory (no log: the store
//! writer's batches are handed in directly).

use super::apply::count_write;
use super::command::CreateConversation;
use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    offset: u64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    Fixture {
        dir,
        store,
        offset: 0,
    }
}

impl Fixture {
    /// Closes the store as a shutdown does (a last checkpoint) and opens it again on the same
    /// directory.
    fn reopened(self) -> Fixture {
        self.store.checkpoint().expect("checkpoint");
        self.crashed()
    }

    /// Closes the store without a checkpoint, as a crash does (what sled wrote stays), and opens
    /// it again on the same directory.
    fn crashed(self) -> Fixture {
        let Fixture { dir, store, offset } = self;
        drop(store);
        let store = crate::testing::reopen(|| Store::open(dir.path()));
        Fixture { dir, store, offset }
    }

    /// Applies commands as one batch of partition 0, with consecutive offsets.
    fn apply(&mut self, commands: Vec<ChatCommand>) -> AppliedBatch {
        let numbered: Vec<_> = commands
            .into_iter()
            .map(|c| {
                self.offset += 1;
                (self.offset - 1, c)
            })
            .collect();
        let position = BatchPosition {
            group: "store",
            topic: "messages",
            partition: 0,
            next_offset: self.offset,
        };
        let applied = self
            .store
            .apply_batch(0, &numbered, u64::MAX)
            .expect("apply");
        self.store.commit_batch(&position).expect("commit");
        applied
    }

    fn send(&mut self, conversation: &str, sender: &str, content: &str) -> String {
        let send = SendMessage::new(conversation, sender, sender, content);
        let id = send.id.clone();
        self.apply(vec![ChatCommand::Send(send)]);
        id
    }
}

/// Conversation commands as the store writer applies them: checked like the edge checks them,
/// then applied as a one-command batch; the writer's outcome is the answer.
impl Store {
    fn create_conversation(
        &self,
        creator: &str,
        id: Option<String>,
        title: Option<String>,
        participants: Vec<String>,
    ) -> Result<Conversation> {
        let command = self.prepare_conversation(creator, id, title, participants)?;
        self.apply_change(ChatCommand::CreateConversation(command))
    }

    fn add_participant(&self, actor: &str, conversation: &str, user: &str) -> Result<Conversation> {
        let change = participant_change(actor, conversation, user);
        let command = ChatCommand::AddParticipant(change);
        self.check_conversation_command(&command)?;
        self.apply_change(command)
    }

    fn remove_participant(
        &self,
        actor: &str,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation> {
        let change = participant_change(actor, conversation, user);
        let command = ChatCommand::RemoveParticipant(change);
        self.check_conversation_command(&command)?;
        self.apply_change(command)
    }

    fn apply_change(&self, command: ChatCommand) -> Result<Conversation> {
        let mut applied = self.apply_batch(0, &[(0, command)], u64::MAX)?;
        let (_, outcome) = applied
            .outcomes
            .pop()
            .expect("a conversation command's outcome");
        outcome
    }
}

fn participant_change(actor: &str, conversation: &str, user: &str) -> ChangeParticipant {
    ChangeParticipant {
        conversation_id: conversation.into(),
        actor: actor.into(),
        user_id: user.into(),
        at: now_rfc3339(),
    }
}

fn seqs(page: &HistoryPage) -> Vec<u64> {
    page.items.iter().map(|m| m.seq).collect()
}

#[test]
fn creating_a_conversation_adds_the_creator_dedups_and_refuses_taken_or_invalid_ids() {
    let f = fixture();
    let c = f
        .store
        .create_conversation(
            "ann",
            Some("team".into()),
            None,
            vec!["bob".into(), "ann".into(), "bob".into()],
        )
        .unwrap();
    assert_eq!(c.participants, ["ann", "bob"]);
    assert!(f.store.is_participant("team", "bob"));
    assert!(!f.store.is_participant("team", "eve"));
    let taken = f
        .store
        .create_conversation("eve", Some("team".into()), None, vec![]);
    assert!(matches!(taken, Err(StoreError::Conflict(_))));
    let invalid = f
        .store
        .create_conversation("eve", Some("a b".into()), None, vec![]);
    assert!(matches!(
        invalid,
        Err(StoreError::InvalidField { field: "id", .. })
    ));
    let assigned = f
        .store
        .create_conversation("eve", None, Some("t".into()), vec![])
        .unwrap();
    assert!(uuid::Uuid::parse_str(&assigned.id).is_ok(), "a UUIDv7 id");
}

#[test]
fn participants_can_add_and_remove_and_outsiders_see_not_found() {
    let f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec![])
        .unwrap();
    assert!(matches!(
        f.store.add_participant("eve", "c", "eve"),
        Err(StoreError::NotFound(_))
    ));
    f.store.add_participant("ann", "c", "bob").unwrap();
    assert!(f.store.is_participant("c", "bob"));
    f.store.remove_participant("bob", "c", "bob").unwrap();
    assert!(!f.store.is_participant("c", "bob"));
    assert!(matches!(
        f.store.conversation_for("bob", "c"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.remove_participant("ann", "c", "bob"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn history_pages_before_and_after_with_has_more_as_the_api_says() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec![])
        .unwrap();
    for i in 0..10 {
        f.send("c", "ann", &format!("m{i}"));
    }
    let newest = f.store.history("c", None, None, 3).unwrap();
    assert_eq!((seqs(&newest), newest.has_more), (vec![8, 9, 10], true));
    let older = f.store.history("c", Some(8), None, 3).unwrap();
    assert_eq!((seqs(&older), older.has_more), (vec![5, 6, 7], true));
    let oldest = f.store.history("c", Some(3), None, 3).unwrap();
    assert_eq!((seqs(&oldest), oldest.has_more), (vec![1, 2], false));
    let first = f.store.history("c", None, Some(0), 4).unwrap();
    assert_eq!((seqs(&first), first.has_more), (vec![1, 2, 3, 4], true));
    let last = f.store.history("c", None, Some(7), 3).unwrap();
    assert_eq!((seqs(&last), last.has_more), (vec![8, 9, 10], false));
    let beyond = f.store.history("c", None, Some(10), 3).unwrap();
    assert_eq!((seqs(&beyond), beyond.has_more), (vec![], false));
    let window = f.store.history("c", Some(6), Some(2), 2).unwrap();
    assert_eq!((seqs(&window), window.has_more), (vec![3, 4], true));
    assert!(f
        .store
        .history("c", Some(0), None, 3)
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        f.store.history("nope", None, None, 3),
        Err(StoreError::NotFound(_))
    ));
    assert!(f.store.history("c", None, None, 0).is_err());
}

#[test]
fn unread_counts_others_messages_and_sending_marks_read() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec!["bob".into()])
        .unwrap();
    f.send("c", "ann", "1");
    f.send("c", "ann", "2");
    assert_eq!(
        f.store.conversation_for("bob", "c").unwrap().unread_count,
        2
    );
    assert_eq!(
        f.store.conversation_for("ann", "c").unwrap().unread_count,
        0
    );
    f.send("c", "bob", "3");
    let bob = f.store.conversation_for("bob", "c").unwrap();
    assert_eq!((bob.last_read_seq, bob.unread_count), (3, 0));
    assert_eq!(
        f.store.conversation_for("ann", "c").unwrap().unread_count,
        1
    );
}

#[test]
fn read_state_moves_forward_only_and_never_past_last_seq() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec!["bob".into()])
        .unwrap();
    for _ in 0..4 {
        f.send("c", "ann", "x");
    }
    let read = |seq| {
        ChatCommand::Read(MarkRead {
            conversation_id: "c".into(),
            user_id: "bob".into(),
            seq,
        })
    };
    f.apply(vec![read(3)]);
    f.apply(vec![read(1)]);
    assert_eq!(f.store.read_state("bob", "c"), 3);
    f.apply(vec![read(99)]);
    assert_eq!(f.store.read_state("bob", "c"), 4);
    let reopened = f.reopened();
    assert_eq!(
        reopened.store.read_state("bob", "c"),
        4,
        "read state persists"
    );
}

#[test]
fn duplicates_by_id_or_client_id_are_stored_once() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec![])
        .unwrap();
    let mut send = SendMessage::new("c", "ann", "Ann", "hi");
    send.client_message_id = Some("k1".into());
    let mut retry = SendMessage::new("c", "ann", "Ann", "hi");
    retry.client_message_id = Some("k1".into());
    let applied = f.apply(vec![
        ChatCommand::Send(send.clone()),
        ChatCommand::Send(send.clone()),
        ChatCommand::Send(retry),
    ]);
    assert_eq!(
        (applied.stored, applied.skipped, applied.events.len()),
        (1, 2, 1)
    );
    assert_eq!(
        f.store.message_id_for_client_id("ann", "c", "k1").unwrap(),
        Some(send.id.clone())
    );
    assert_eq!(f.store.message("c", &send.id).unwrap().seq, 1);
    assert!(matches!(
        f.store.message("other", &send.id),
        Err(StoreError::NotFound(_))
    ));
}

/// The view keeps each conversation's latest message without the JSON the batch made for its
/// event and chunk: the view holds one message per conversation for the server's lifetime.
#[test]
fn the_view_keeps_the_last_message_without_its_json() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec!["bob".into()])
        .unwrap();
    let sends: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|content| ChatCommand::Send(SendMessage::new("c", "ann", "ann", *content)))
        .collect();
    let applied = f.apply(sends);
    assert_eq!(applied.stored, 3);
    let last = f.store.conversation("c").unwrap().last_message.unwrap();
    assert_eq!((last.seq, last.content.as_str()), (3, "three"));
    assert_eq!(last.json.made_len(), 0, "the view's message holds its JSON");
}

#[test]
fn only_the_sender_edits_or_deletes_and_delete_keeps_seq() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec!["bob".into()])
        .unwrap();
    let id = f.send("c", "ann", "hello");
    let edit = |sender: &str, content: &str| {
        ChatCommand::Edit(EditMessage {
            message_id: id.clone(),
            conversation_id: "c".into(),
            sender_id: sender.into(),
            content: content.into(),
            at: now_rfc3339(),
        })
    };
    assert_eq!(f.apply(vec![edit("bob", "hacked")]).skipped, 1);
    let applied = f.apply(vec![edit("ann", "hello!")]);
    assert_eq!(applied.events.len(), 1);
    let edited = f.store.message("c", &id).unwrap();
    assert_eq!(
        (edited.content.as_str(), edited.edited_at.is_some()),
        ("hello!", true)
    );
    assert_eq!(
        f.store
            .conversation("c")
            .unwrap()
            .last_message
            .unwrap()
            .content,
        "hello!"
    );
    f.apply(vec![ChatCommand::Delete(DeleteMessage {
        message_id: id.clone(),
        conversation_id: "c".into(),
        sender_id: "ann".into(),
        at: now_rfc3339(),
    })]);
    let deleted = f.store.message("c", &id).unwrap();
    assert_eq!(
        (deleted.seq, deleted.content.as_str(), deleted.deleted),
        (1, "", true)
    );
    assert_eq!(
        f.apply(vec![edit("ann", "again")]).skipped,
        1,
        "a deleted message stays deleted"
    );
}

#[test]
fn sends_leave_no_outbox_entry_edits_do_and_the_commit_is_separate() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec![])
        .unwrap();
    f.send("c", "ann", "a");
    let b = f.send("c", "ann", "b");
    assert_eq!(f.store.applied_offset(0), Some(2));
    assert!(f.store.pending_events(0, 10).unwrap().is_empty());

    let edit = ChatCommand::Edit(EditMessage {
        message_id: b,
        conversation_id: "c".into(),
        sender_id: "ann".into(),
        content: "b2".into(),
        at: now_rfc3339(),
    });
    let position = BatchPosition {
        group: "store",
        topic: "messages",
        partition: 0,
        next_offset: 3,
    };
    let applied = f.store.apply_batch(0, &[(2, edit)], u64::MAX).unwrap();
    assert_eq!(
        f.store.applied_offset(0),
        Some(2),
        "applying commits nothing"
    );
    let pending = f.store.pending_events(0, 10).unwrap();
    assert_eq!(
        pending, applied.events,
        "the edit's event waits in the outbox"
    );
    let event: MessageEvent = serde_json::from_slice(&pending[0].payload).unwrap();
    assert_eq!(
        (
            event.event_type,
            event.message.seq,
            event.message.content.as_str()
        ),
        (EventType::MessageUpdated, 2, "b2")
    );
    assert_eq!(f.store.batch_events(0, 2..3, Vec::new()).unwrap(), pending);
    f.store.commit_batch(&position).unwrap();
    assert_eq!(f.store.remove_events_between(0, 2..3).unwrap(), 1);
    assert!(f.store.pending_events(0, 10).unwrap().is_empty());
    assert_eq!(f.store.applied_offset(0), Some(3));
}

/// The commands of the batch the interrupted-batch test applies at offsets 1.. (offset 0 holds
/// `first`, ann's message in `c`).
fn replayed_batch(first: &str) -> Vec<ChatCommand> {
    let mut m2 = SendMessage::new("c", "bob", "Bob", "m2");
    m2.client_message_id = Some("k".into());
    let mut retry = m2.clone();
    retry.id = new_message_id();
    let m3 = SendMessage::new("c", "ann", "Ann", "m3");
    let m4 = SendMessage::new("c", "bob", "Bob", "m4");
    let edit = |id: &str, sender: &str, content: &str| {
        ChatCommand::Edit(EditMessage {
            message_id: id.into(),
            conversation_id: "c".into(),
            sender_id: sender.into(),
            content: content.into(),
            at: now_rfc3339(),
        })
    };
    let delete = |id: &str, sender: &str| {
        ChatCommand::Delete(DeleteMessage {
            message_id: id.into(),
            conversation_id: "c".into(),
            sender_id: sender.into(),
            at: now_rfc3339(),
        })
    };
    vec![
        ChatCommand::Send(m2.clone()),
        ChatCommand::Send(SendMessage::new("d", "ann", "Ann", "d1")),
        edit(first, "ann", "edited"),
        ChatCommand::Send(retry),
        ChatCommand::Read(MarkRead {
            conversation_id: "d".into(),
            user_id: "bob".into(),
            seq: 1,
        }),
        ChatCommand::Send(m3.clone()),
        delete(&m2.id, "bob"),
        edit(&m3.id, "ann", "m3 edited"),
        ChatCommand::Send(m4.clone()),
        delete(&m4.id, "bob"),
    ]
}

/// Per conversation: history, lastSeq, lastMessage, read state of ann and bob.
type Shown = Vec<(Vec<Message>, u64, Option<Message>, Vec<u64>)>;
/// The events the writer relays: (source offset, index, event type, message).
type Pending = Vec<(u64, u32, EventType, Message)>;

/// Everything the store shows after the batch: histories, conversations, read state, and the
/// events the writer relays for source offsets `batch` (without their id and time).
fn observable(
    store: &Store,
    batch: std::ops::Range<u64>,
    applied: Vec<OutboxEntry>,
) -> (Shown, Pending) {
    let mut seen = Vec::new();
    for c in ["c", "d"] {
        let page = store.history(c, None, Some(0), 100).expect("history");
        let conversation = store.conversation(c).expect("conversation");
        let reads: Vec<u64> = ["ann", "bob"]
            .iter()
            .map(|u| store.read_state(u, c))
            .collect();
        seen.push((
            page.items,
            conversation.last_seq,
            conversation.last_message.map(Arc::unwrap_or_clone),
            reads,
        ));
    }
    let events: Vec<_> = store
        .batch_events(0, batch, applied)
        .expect("events")
        .into_iter()
        .map(|e| {
            let event: MessageEvent = serde_json::from_slice(&e.payload).expect("event");
            (e.source_offset, e.index, event.event_type, event.message)
        })
        .collect();
    (seen, events)
}

/// How many commands of [`replayed_batch`] go in one batch: the runs below apply them as several
/// batches after the last checkpoint, as a busy writer does between two checkpoints.
const BATCH: usize = 3;

/// A fresh store with conversation `c` (ann, bob) and `d` (bob, ann).
fn with_conversations_c_and_d() -> Fixture {
    let f = fixture();
    for (id, creator, other) in [("c", "ann", "bob"), ("d", "bob", "ann")] {
        f.store
            .create_conversation(creator, Some(id.into()), None, vec![other.into()])
            .expect("create");
    }
    f
}

/// The store writer's place in partition 0 of `messages`.
fn position(next_offset: u64) -> BatchPosition<'static> {
    BatchPosition {
        group: "store",
        topic: "messages",
        partition: 0,
        next_offset,
    }
}

/// Where [`run_batches`] crashes.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// Batch number `batch`, after `writes` writes.
    InBatch { batch: usize, writes: usize },
    /// Once every batch is applied, a checkpoint cut short after `writes` of its writes (its
    /// message-id index buckets, then its chunks, activity, read states and positions).
    CheckpointCut { writes: usize },
}

/// Applies the first message and checkpoints, then applies the commands at offsets 1.. in
/// batches of [`BATCH`] without a checkpoint. With a `crash`, the store is closed where it says
/// and reopened (the view is rebuilt from disk: the last checkpoint's messages, activity, read
/// state and position, and whatever was written since), and everything from the checkpoint's
/// position is replayed as the writer does after a restart. Returns what the store shows, or
/// `None` if the batch to interrupt had fewer writes.
fn run_batches(
    commands: &[ChatCommand],
    first: &SendMessage,
    crash: Option<Crash>,
) -> Option<(Shown, Pending)> {
    let f = with_conversations_c_and_d();
    f.store
        .apply_batch(0, &[(0, ChatCommand::Send(first.clone()))], u64::MAX)
        .expect("first batch");
    f.store.commit_batch(&position(1)).expect("commit");
    f.store.checkpoint().expect("checkpoint");
    let numbered: Vec<_> = (1u64..).zip(commands.iter().cloned()).collect();
    let end = 1 + commands.len() as u64;
    let mut events = Vec::new();
    // What the store shows once the crashed store is reopened and replayed.
    let replayed = |f: Fixture| {
        assert_eq!(
            f.store.applied_offset(0),
            Some(1),
            "only a checkpoint writes the position"
        );
        // As the writer after a restart: every record replayed was in the log before it.
        let applied = f.store.apply_batch(0, &numbered, end).expect("replay");
        observable(&f.store, 1..end, applied.events)
    };
    for (number, batch) in numbered.chunks(BATCH).enumerate() {
        if let Some(Crash::InBatch { writes, .. }) =
            crash.filter(|c| matches!(c, Crash::InBatch { batch, .. } if *batch == number))
        {
            if f.store.apply_batch_interrupted(0, batch, writes).is_ok() {
                return None;
            }
            let f = f.crashed();
            let c = f.store.history("c", None, Some(0), 100).expect("history");
            assert!(
                c.items.iter().all(|m| m.seq <= 2),
                "since the checkpoint only c's first message (m2) was written, alone; the \
                 later ones were in memory: {:?}",
                seqs(&c)
            );
            return Some(replayed(f));
        }
        // Applied for the first time: no record of it was in the log when the writer started.
        let applied = f.store.apply_batch(0, batch, 1).expect("batch");
        let next = batch.last().map_or(1, |(offset, _)| offset + 1);
        f.store.commit_batch(&position(next)).expect("commit");
        events.extend(applied.events);
    }
    match crash {
        None => Some(observable(&f.store, 1..end, events)),
        Some(Crash::InBatch { .. }) => None,
        Some(Crash::CheckpointCut { writes }) => {
            let mut left = Some(writes);
            let cut = f
                .store
                .checkpoint_between(&mut || {}, &mut || count_write(&mut left));
            if cut.is_ok() {
                return None;
            }
            Some(replayed(f.crashed()))
        }
    }
}

#[test]
fn batches_interrupted_after_any_write_since_the_checkpoint_are_completed_exactly_once_by_replay() {
    let first = SendMessage::new("c", "ann", "Ann", "first");
    let commands = replayed_batch(&first.id);
    let reference = run_batches(&commands, &first, None).expect("uninterrupted run");
    let mut interrupted = 0;
    for batch in 0..commands.len().div_ceil(BATCH) {
        for writes in 0.. {
            let crash = Crash::InBatch { batch, writes };
            let Some(replayed) = run_batches(&commands, &first, Some(crash)) else {
                break;
            };
            assert_eq!(
                replayed, reference,
                "crash in batch {batch} after {writes} writes"
            );
            interrupted += 1;
        }
    }
    // Nine writes in all: m2's client id (its message-id index entry is pending in memory
    // until a checkpoint); the records of the messages written alone (m2, c's first since the
    // checkpoint, and d1, d's); the edits' and deletes' outbox entries, and the rewrites of the
    // two messages on disk (first, m2).
    assert_eq!(
        interrupted, 9,
        "every write of every batch was a crash point"
    );
}

/// Applies the first message and checkpoints, then the commands in batches of [`BATCH`], batch
/// number `during` from inside a checkpoint, at its `point`-th place where a store writer may
/// apply one (`None` if it has fewer). Then the store crashes (no further checkpoint) and
/// replays from the position that checkpoint made durable. Returns what the store shows.
fn run_with_a_batch_during_a_checkpoint(
    commands: &[ChatCommand],
    first: &SendMessage,
    during: usize,
    point: usize,
) -> Option<Shown> {
    let f = with_conversations_c_and_d();
    let apply = |batch: &[(u64, ChatCommand)]| {
        f.store.apply_batch(0, batch, 1).expect("batch");
        let next = batch.last().map_or(1, |(offset, _)| offset + 1);
        f.store.commit_batch(&position(next)).expect("commit");
    };
    apply(&[(0, ChatCommand::Send(first.clone()))]);
    f.store.checkpoint().expect("checkpoint");
    let numbered: Vec<_> = (1u64..).zip(commands.iter().cloned()).collect();
    let end = 1 + commands.len() as u64;
    for (number, batch) in numbered.chunks(BATCH).enumerate() {
        if number != during {
            apply(batch);
            continue;
        }
        let mut places = 0;
        f.store
            .checkpoint_between(
                &mut || {
                    if places == point {
                        apply(batch);
                    }
                    places += 1;
                },
                &mut || Ok(()),
            )
            .expect("checkpoint");
        if places <= point {
            return None;
        }
    }
    let f = f.crashed();
    let from = f.store.applied_offset(0).expect("a durable position");
    let replay: Vec<_> = numbered
        .iter()
        .filter(|(o, _)| *o >= from)
        .cloned()
        .collect();
    // As the writer after a restart: every record replayed was in the log before it.
    f.store.apply_batch(0, &replay, end).expect("replay");
    Some(observable(&f.store, 1..end, Vec::new()).0)
}

#[test]
fn a_batch_applied_at_any_point_of_a_checkpoint_is_kept_exactly_once_through_a_crash() {
    let first = SendMessage::new("c", "ann", "Ann", "first");
    let commands = replayed_batch(&first.id);
    let (reference, _) = run_batches(&commands, &first, None).expect("uninterrupted run");
    let mut runs = 0;
    for during in 0..commands.len().div_ceil(BATCH) {
        for point in 0.. {
            let Some(shown) =
                run_with_a_batch_during_a_checkpoint(&commands, &first, during, point)
            else {
                break;
            };
            assert_eq!(shown, reference, "batch {during} at place {point}");
            runs += 1;
        }
    }
    assert!(runs >= 4 * 2, "{runs} runs");
}

#[test]
fn a_checkpoint_cut_short_after_any_of_its_writes_is_completed_exactly_once_by_replay() {
    let first = SendMessage::new("c", "ann", "Ann", "first");
    let commands = replayed_batch(&first.id);
    let reference = run_batches(&commands, &first, None).expect("uninterrupted run");
    let mut cuts = 0;
    for writes in 0.. {
        let crash = Crash::CheckpointCut { writes };
        let Some(replayed) = run_batches(&commands, &first, Some(crash)) else {
            break;
        };
        assert_eq!(replayed, reference, "{crash:?}");
        cuts += 1;
    }
    // At least: one index bucket (the ids of m2, its retry, d1, m3 and m4 fall in one to five,
    // by the millisecond each was made in), c's chunk (m3, m4), the activity of c and d, four
    // read states (ann's and bob's, of c and of d) and the position.
    assert!(cuts >= 9, "only {cuts} cut points");
}

#[test]
fn the_writer_settles_a_race_the_edge_checks_could_not_see() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = StoreLimits {
        max_participants: 2,
    };
    let store = Store::open_with(dir.path(), limits).expect("open with a limit of 2");
    let mut f = Fixture {
        dir,
        store,
        offset: 0,
    };
    f.store
        .create_conversation("ann", Some("c".into()), None, vec![])
        .unwrap();
    // Both pass the edge's check (one place left), in the log one after the other.
    let bob = participant_change("ann", "c", "bob");
    let cy = participant_change("ann", "c", "cy");
    let check = |change: &ChangeParticipant| {
        let command = ChatCommand::AddParticipant(change.clone());
        f.store.check_conversation_command(&command)
    };
    check(&bob).unwrap();
    check(&cy).unwrap();
    let applied = f.apply(vec![
        ChatCommand::AddParticipant(bob),
        ChatCommand::AddParticipant(cy),
    ]);
    let outcomes: Vec<_> = applied.outcomes.iter().map(|(_, o)| o.is_ok()).collect();
    assert_eq!(outcomes, [true, false]);
    assert!(matches!(
        applied.outcomes[1].1,
        Err(StoreError::LimitReached(_))
    ));
    assert_eq!(f.store.participants("c").unwrap(), ["ann", "bob"]);
    // Only the change that happened is announced.
    assert_eq!(
        applied
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Conversation { .. }))
            .count(),
        1
    );
}

#[test]
fn a_send_right_after_the_create_in_one_batch_is_stored() {
    let mut f = fixture();
    let create = f
        .store
        .prepare_conversation("ann", Some("c".into()), None, vec!["bob".into()])
        .unwrap();
    let send = SendMessage::new("c", "bob", "Bob", "first");
    let applied = f.apply(vec![
        ChatCommand::CreateConversation(create),
        ChatCommand::Send(send.clone()),
    ]);
    assert_eq!(applied.stored, 1);
    let stored = f.store.message("c", &send.id).expect("stored");
    assert_eq!(stored.seq, 1);
    // A replay of the create (after a crash) is a conflict nobody waits for: nothing changes.
    let again = f
        .apply(vec![ChatCommand::CreateConversation(CreateConversation {
            conversation_id: "c".into(),
            title: Some("other".into()),
            participants: vec!["eve".into()],
            at: now_rfc3339(),
        })])
        .outcomes;
    assert!(matches!(again[0].1, Err(StoreError::Conflict(_))));
    assert_eq!(f.store.participants("c").unwrap(), ["ann", "bob"]);
}

/// Messages of three checkpoints and an unwritten tail: a quiet interval's first message
/// written alone and the rest as one chunk, a busy interval's all in one chunk. History pages
/// in either direction, single messages, edits and deletes read the same whether a message is
/// a record of its own, in a chunk on disk or in memory, and after a restart.
#[test]
fn chunks_on_disk_and_the_unwritten_tail_read_as_one_history() {
    let mut f = fixture();
    f.store
        .create_conversation("ann", Some("c".into()), None, vec!["bob".into()])
        .unwrap();
    let mut ids = Vec::new();
    // m1 alone, m2-m3 a chunk; m4 (busy from the first after two) a chunk of one; m5 alone
    // (one in the interval before), m6-m7 a chunk; m8-m10 unwritten until the restart.
    let rounds = [3, 1, 3, 3];
    for (round, count) in rounds.iter().enumerate() {
        let first = ids.len() + 1;
        let sends: Vec<SendMessage> = (first..first + count)
            .map(|n| SendMessage::new("c", "ann", "Ann", format!("m{n}")))
            .collect();
        ids.extend(sends.iter().map(|s| s.id.clone()));
        f.apply(sends.into_iter().map(ChatCommand::Send).collect());
        if round < rounds.len() - 1 {
            f.store.checkpoint().unwrap();
        }
    }
    let edit = |id: &str, content: &str| {
        ChatCommand::Edit(EditMessage {
            message_id: id.into(),
            conversation_id: "c".into(),
            sender_id: "ann".into(),
            content: content.into(),
            at: now_rfc3339(),
        })
    };
    let delete = ChatCommand::Delete(DeleteMessage {
        message_id: ids[9].clone(),
        conversation_id: "c".into(),
        sender_id: "ann".into(),
        at: now_rfc3339(),
    });
    f.apply(vec![
        edit(&ids[4], "alone, edited"),
        edit(&ids[5], "in a chunk, edited"),
        edit(&ids[8], "unwritten, edited"),
        delete,
    ]);
    let check = |store: &Store| {
        let all = store.history("c", None, Some(0), 100).unwrap();
        assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
        let contents: Vec<&str> = all.items.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents[3], "m4");
        assert_eq!(contents[4], "alone, edited");
        assert_eq!(contents[5], "in a chunk, edited");
        assert_eq!(contents[7], "m8");
        assert_eq!(contents[8], "unwritten, edited");
        assert!(all.items[9].deleted && contents[9].is_empty());
        let page = store.history("c", Some(9), Some(2), 4).unwrap();
        assert_eq!((seqs(&page), page.has_more), (vec![3, 4, 5, 6], true));
        let page = store.history("c", Some(10), None, 5).unwrap();
        assert_eq!((seqs(&page), page.has_more), (vec![5, 6, 7, 8, 9], true));
        let page = store.history("c", Some(3), None, 5).unwrap();
        assert_eq!((seqs(&page), page.has_more), (vec![1, 2], false));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.message("c", id).unwrap().seq, i as u64 + 1);
        }
    };
    check(&f.store);
    let f = f.reopened();
    check(&f.store);
    let record_seqs: Vec<u64> = f
        .store
        .trees()
        .messages
        .iter()
        .keys()
        .map(|key| {
            let key = key.unwrap();
            u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap())
        })
        .collect();
    assert_eq!(
        record_seqs,
        [1, 2, 4, 5, 6, 8],
        "a quiet interval's first message alone, the rest one chunk; a busy interval's all \
         one chunk; edits rewrote in place"
    );
}
