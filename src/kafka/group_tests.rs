//! The group state machine driven directly, with Tokio's paused clock for its timers.

use super::*;

fn join_args(member_id: &str, protocols: &[&str]) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_owned(),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| ((*p).to_owned(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
    }
}

fn join(group: &mut Group, member_id: &str, now: Instant) -> oneshot::Receiver<Joined> {
    let (tx, rx) = oneshot::channel();
    group.apply(Command::Join(join_args(member_id, &["range"]), tx), now);
    rx
}

fn sync(
    group: &mut Group,
    member_id: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    now: Instant,
) -> oneshot::Receiver<Result<Bytes, ResponseError>> {
    let (reply, rx) = oneshot::channel();
    group.apply(
        Command::Sync {
            member_id: member_id.to_owned(),
            generation,
            assignments,
            reply,
        },
        now,
    );
    rx
}

fn heartbeat(
    group: &mut Group,
    member_id: &str,
    generation: i32,
    now: Instant,
) -> Option<ResponseError> {
    let (reply, mut rx) = oneshot::channel();
    group.apply(
        Command::Heartbeat {
            member_id: member_id.to_owned(),
            generation,
            reply,
        },
        now,
    );
    rx.try_recv().expect("a heartbeat is answered at once")
}

#[tokio::test(start_paused = true)]
async fn a_lone_member_leads_and_gets_the_assignment_it_hands_in() {
    let mut group = Group::new("g".into());
    let now = Instant::now();
    let joined = join(&mut group, "", now).await.expect("answered");
    assert_eq!((joined.error, joined.generation), (0, 1));
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.members.len(), 1, "the leader sees every member");
    assert_eq!(joined.protocol, "range");
    let me = joined.member_id.clone();
    let mine = sync(
        &mut group,
        &me,
        1,
        vec![(me.clone(), Bytes::from_static(b"p0"))],
        now,
    );
    assert_eq!(mine.await.expect("answered"), Ok(Bytes::from_static(b"p0")));
    assert_eq!(group.view().state, "Stable");
}

#[tokio::test(start_paused = true)]
async fn a_second_member_makes_the_first_rejoin_and_each_gets_its_own_blob() {
    let mut group = Group::new("g".into());
    let now = Instant::now();
    let first = join(&mut group, "", now).await.expect("answered");
    let a = first.member_id.clone();
    let _ = sync(
        &mut group,
        &a,
        1,
        vec![(a.clone(), Bytes::from_static(b"all"))],
        now,
    )
    .await;
    let mut second = join(&mut group, "", now);
    assert!(
        second.try_recv().is_err(),
        "waits for the known member to rejoin"
    );
    assert_eq!(
        heartbeat(&mut group, &a, 1, now),
        Some(ResponseError::RebalanceInProgress)
    );
    let again = join(&mut group, &a, now).await.expect("answered");
    let second = second.await.expect("answered");
    assert_eq!(again.generation, 2);
    assert_eq!(second.generation, 2);
    assert_eq!(again.leader, a, "the leader stays the leader");
    assert!(
        second.members.is_empty(),
        "only the leader sees the members"
    );
    let b = second.member_id.clone();
    let waiting = sync(&mut group, &b, 2, Vec::new(), now);
    let leader = sync(
        &mut group,
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"p0")),
            (b.clone(), Bytes::from_static(b"p1")),
        ],
        now,
    );
    assert_eq!(
        leader.await.expect("answered"),
        Ok(Bytes::from_static(b"p0"))
    );
    assert_eq!(
        waiting.await.expect("answered"),
        Ok(Bytes::from_static(b"p1"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_evicted_after_its_session_timeout_and_the_rest_rebalance() {
    let mut group = Group::new("g".into());
    let start = Instant::now();
    let a = join(&mut group, "", start)
        .await
        .expect("answered")
        .member_id;
    let _ = sync(&mut group, &a, 1, Vec::new(), start).await;
    let b_rx = join(&mut group, "", start);
    let _ = join(&mut group, &a, start).await;
    let b = b_rx.await.expect("answered").member_id;
    drop(sync(&mut group, &a, 2, Vec::new(), start));
    drop(sync(&mut group, &b, 2, Vec::new(), start));
    // a keeps heartbeating, b goes silent.
    let later = start + Duration::from_secs(6);
    assert_eq!(heartbeat(&mut group, &a, 2, later), None);
    let after = start + Duration::from_secs(11);
    group.tick(after);
    assert_eq!(group.view().members.len(), 1, "b was evicted");
    assert_eq!(
        heartbeat(&mut group, &a, 2, after),
        Some(ResponseError::RebalanceInProgress)
    );
    let rejoined = join(&mut group, &a, after).await.expect("answered");
    assert_eq!(rejoined.generation, 3);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_does_not_rejoin_in_the_rebalance_timeout_is_dropped() {
    let mut group = Group::new("g".into());
    let now = Instant::now();
    let a = join(&mut group, "", now).await.expect("answered").member_id;
    let _ = sync(&mut group, &a, 1, Vec::new(), now).await;
    let mut b = join(&mut group, "", now);
    // a heartbeats (so its session lives) but never rejoins.
    for second in 1..30 {
        let _ = heartbeat(&mut group, &a, 1, now + Duration::from_secs(second));
    }
    group.tick(now + Duration::from_secs(31));
    let b = b.try_recv().expect("the join completed without a");
    assert_eq!(b.leader, b.member_id);
    assert_eq!(group.view().members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_members_and_old_generations_are_refused() {
    let mut group = Group::new("g".into());
    let now = Instant::now();
    let refused = join(&mut group, "nobody", now).await.expect("answered");
    assert_eq!(refused.error, ResponseError::UnknownMemberId.code());
    let a = join(&mut group, "", now).await.expect("answered").member_id;
    assert_eq!(
        heartbeat(&mut group, &a, 0, now),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        heartbeat(&mut group, "ghost", 1, now),
        Some(ResponseError::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_member_leaving_empties_the_group() {
    let mut group = Group::new("g".into());
    let now = Instant::now();
    let a = join(&mut group, "", now).await.expect("answered").member_id;
    let (reply, rx) = oneshot::channel();
    group.apply(
        Command::Leave {
            member_ids: vec![a.clone()],
            reply,
        },
        now,
    );
    assert_eq!(rx.await.expect("answered"), vec![(a, None)]);
    assert_eq!(group.view().state, "Empty");
}
