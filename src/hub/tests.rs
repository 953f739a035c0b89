//! Unit tests of the hub: delivery, queue overflow, session limits, presence with its grace
//! period, and typing with its rate limit and expiry. Time is passed explicitly to `tick`, or
//! the timer task ([`Hub::run_timers`]) runs on tokio's paused clock, which jumps ahead
//! whenever every task waits: a five-second grace period costs no real time.

use super::tests_support::{drain, hub_with, users};
use super::*;

/// A hub whose grace period is `grace`, where ann and bob share a conversation.
fn ann_and_bob_with_grace(grace: Duration) -> Hub {
    let config = HubConfig {
        presence_grace: grace,
        ..HubConfig::default()
    };
    hub_with(config, &[("ann", "bob")])
}

/// A numbered frame (a `pong` whose `ref` is `n`).
fn text(n: u64) -> Frame {
    frame::pong(Some(&serde_json::json!(n)))
}

#[test]
fn a_frame_reaches_every_session_of_every_recipient_and_nobody_else() {
    let hub = hub_with(HubConfig::default(), &[]);
    let mut ann_phone = hub.open("ann").unwrap();
    let mut ann_laptop = hub.open("ann").unwrap();
    let mut bob = hub.open("bob").unwrap();
    let mut eve = hub.open("eve").unwrap();
    assert_eq!(hub.deliver(&users(&["ann", "bob", "nobody"]), &text(1)), 3);
    for session in [&mut ann_phone, &mut ann_laptop, &mut bob] {
        assert_eq!(
            drain(session),
            [serde_json::json!({"type": "pong", "ref": 1})]
        );
    }
    assert!(drain(&mut eve).is_empty());
    assert_eq!(hub.stats().deliveries, 3);
}

#[test]
fn a_full_queue_closes_its_session_as_slow_and_spares_the_others() {
    let config = HubConfig {
        queue_frames: 2,
        ..HubConfig::default()
    };
    let hub = hub_with(config, &[]);
    let slow = hub.open("slow").unwrap();
    let mut fast = hub.open("fast").unwrap();
    let both = users(&["slow", "fast"]);
    for n in 0..3 {
        hub.deliver(&both, &text(n));
        drain(&mut fast);
    }
    assert_eq!(slow.handle().close_reason(), Some(CloseReason::Slow));
    assert_eq!(CloseReason::Slow.code(), Some(4008));
    assert!(!fast.handle().is_closed());
    assert_eq!(hub.stats().closed_slow, 1);
    hub.deliver(&both, &text(9));
    assert_eq!(
        drain(&mut fast),
        [serde_json::json!({"type": "pong", "ref": 9})]
    );
}

#[test]
fn session_limits_refuse_overall_and_per_user_and_free_on_close() {
    let config = HubConfig {
        max_sessions: 3,
        max_sessions_per_user: 2,
        ..HubConfig::default()
    };
    let hub = hub_with(config, &[]);
    let a1 = hub.open("ann").unwrap();
    let _a2 = hub.open("ann").unwrap();
    assert_eq!(hub.open("ann").unwrap_err(), HubError::UserFull { max: 2 });
    let _b1 = hub.open("bob").unwrap();
    assert_eq!(hub.open("cat").unwrap_err(), HubError::Full { max: 3 });
    assert_eq!(hub.stats().refused, 2);
    drop(a1);
    assert_eq!(hub.session_count(), 2);
    assert!(hub.open("cat").is_ok());
    hub.close_all(CloseReason::ShuttingDown);
    assert_eq!(hub.open("dan").unwrap_err(), HubError::ShuttingDown);
}

#[test]
fn has_live_session_follows_the_users_sessions() {
    let hub = hub_with(HubConfig::default(), &[]);
    assert!(!hub.has_live_session("ann"));
    let phone = hub.open("ann").unwrap();
    let laptop = hub.open("ann").unwrap();
    assert_eq!(hub.user_session_count("ann"), 2);
    drop(phone);
    assert!(hub.has_live_session("ann"), "one device is still connected");
    drop(laptop);
    assert!(!hub.has_live_session("ann"));
}

#[test]
fn presence_is_online_at_once_and_offline_only_after_the_grace_period() {
    let grace = Duration::from_secs(5);
    let hub = ann_and_bob_with_grace(grace);
    let mut bob = hub.open("bob").unwrap();
    let ann = hub.open("ann").unwrap();
    assert_eq!(
        drain(&mut bob),
        [serde_json::json!({"type": "presence", "userId": "ann", "status": "online"})]
    );
    drop(ann);
    let closed = Instant::now();
    hub.tick(closed + grace - Duration::from_millis(100));
    assert!(drain(&mut bob).is_empty(), "still inside the grace period");
    hub.tick(closed + grace + Duration::from_millis(100));
    let frames = drain(&mut bob);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["status"], "offline");
    assert!(frames[0]["lastSeen"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_reconnect_within_the_grace_period_shows_no_flap() {
    let grace = Duration::from_secs(5);
    let hub = ann_and_bob_with_grace(grace);
    let mut bob = hub.open("bob").unwrap();
    drop(hub.open("ann").unwrap());
    drain(&mut bob);
    let _back = hub.open("ann").unwrap();
    hub.tick(Instant::now() + grace * 2);
    assert!(
        drain(&mut bob).is_empty(),
        "neither offline nor online again"
    );
}

#[test]
fn a_new_session_hears_which_contacts_are_online() {
    let hub = hub_with(HubConfig::default(), &[("ann", "bob"), ("ann", "cat")]);
    let _bob = hub.open("bob").unwrap();
    let mut ann = hub.open("ann").unwrap();
    assert_eq!(
        drain(&mut ann),
        [serde_json::json!({"type": "presence", "userId": "bob", "status": "online"})],
        "cat is offline and not mentioned"
    );
}

#[test]
fn typing_is_forwarded_rate_limited_and_expires_by_itself() {
    let config = HubConfig {
        typing_ttl: Duration::from_secs(5),
        typing_interval: Duration::from_secs(1),
        ..HubConfig::default()
    };
    let hub = hub_with(config, &[]);
    let mut bob = hub.open("bob").unwrap();
    let start = Instant::now();
    let to_bob = || users(&["bob"]);
    hub.typing_at("ann", "c", true, to_bob(), start);
    hub.typing_at(
        "ann",
        "c",
        true,
        to_bob(),
        start + Duration::from_millis(500),
    );
    let frames = drain(&mut bob);
    assert_eq!(
        frames,
        [
            serde_json::json!({"type": "typing", "conversationId": "c", "userId": "ann", "typing": true})
        ],
        "the refresh within the interval is not forwarded"
    );
    // The refresh at +0.5 s moved the expiry to +5.5 s.
    hub.tick(start + Duration::from_millis(5_200));
    assert!(drain(&mut bob).is_empty());
    hub.tick(start + Duration::from_millis(5_600));
    let frames = drain(&mut bob);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["typing"], false);
    hub.tick(start + Duration::from_secs(60));
    assert!(drain(&mut bob).is_empty(), "expired once");
}

#[test]
fn typing_false_is_forwarded_only_while_typing() {
    let hub = hub_with(HubConfig::default(), &[]);
    let mut bob = hub.open("bob").unwrap();
    hub.typing("ann", "c", false, users(&["bob"]));
    assert!(drain(&mut bob).is_empty());
    hub.typing("ann", "c", true, users(&["bob"]));
    hub.typing("ann", "c", false, users(&["bob"]));
    let flags: Vec<_> = drain(&mut bob)
        .iter()
        .map(|f| f["typing"].clone())
        .collect();
    assert_eq!(flags, [true, false]);
}

/// Starts the hub's timer task; cancel the token to stop it.
fn start_timers(hub: &Hub) -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(hub.clone().run_timers(shutdown.clone()));
    shutdown
}

/// Asserts that a timer armed at `since` came due `after` later, within one tick of the timer.
fn assert_due_on_time(since: Instant, after: Duration) {
    let waited = since.elapsed();
    assert!(
        waited >= after && waited <= after + TIMER_TICK,
        "{waited:?}"
    );
}

/// The next frame queued to `session` within `wait`, as JSON; `None` if none came.
async fn next_within(session: &mut Session, wait: Duration) -> Option<serde_json::Value> {
    let frame = tokio::time::timeout(wait, session.recv()).await.ok()??;
    Some(crate::api::ws::codec::to_json(&frame))
}

/// The timer task announces `offline` once, no sooner than the grace period after the last
/// session closed and at most one tick later.
#[tokio::test(start_paused = true)]
async fn the_timer_task_announces_offline_once_the_grace_period_has_passed() {
    let grace = Duration::from_secs(5);
    let hub = ann_and_bob_with_grace(grace);
    let timers = start_timers(&hub);
    let mut bob = hub.open("bob").unwrap();
    drop(hub.open("ann").unwrap());
    let closed = Instant::now();
    assert_eq!(drain(&mut bob)[0]["status"], "online");

    let early = next_within(&mut bob, grace - TIMER_TICK).await;
    assert_eq!(early, None, "still inside the grace period");
    let offline = next_within(&mut bob, 2 * TIMER_TICK)
        .await
        .expect("offline once the grace period passed");
    assert_eq!(
        (offline["userId"].clone(), offline["status"].clone()),
        (serde_json::json!("ann"), serde_json::json!("offline"))
    );
    assert_due_on_time(closed, grace);
    assert_eq!(
        next_within(&mut bob, grace * 2).await,
        None,
        "announced once"
    );
    timers.cancel();
}

/// A user with two devices stays online while either is connected; the grace period starts
/// when the last one closes.
#[tokio::test(start_paused = true)]
async fn a_user_stays_online_while_any_device_is_connected() {
    let grace = Duration::from_secs(5);
    let hub = ann_and_bob_with_grace(grace);
    let timers = start_timers(&hub);
    let mut bob = hub.open("bob").unwrap();
    let phone = hub.open("ann").unwrap();
    let laptop = hub.open("ann").unwrap();
    let frames = drain(&mut bob);
    assert_eq!(
        frames.len(),
        1,
        "the second device announces nothing: {frames:?}"
    );

    drop(phone);
    let early = next_within(&mut bob, grace * 3).await;
    assert_eq!(early, None, "the laptop is still connected");
    drop(laptop);
    let closed = Instant::now();
    let offline = next_within(&mut bob, grace + 2 * TIMER_TICK)
        .await
        .expect("offline after the last device");
    assert_eq!(offline["status"], "offline");
    assert!(closed.elapsed() >= grace, "{:?}", closed.elapsed());
    timers.cancel();
}

/// A session opened within the grace period cancels the departure (no `offline`, no second
/// `online`); the next departure gets a grace period of its own.
#[tokio::test(start_paused = true)]
async fn a_reconnect_within_the_grace_period_cancels_the_departure_on_the_timer_task() {
    let grace = Duration::from_secs(5);
    let hub = ann_and_bob_with_grace(grace);
    let timers = start_timers(&hub);
    let mut bob = hub.open("bob").unwrap();
    drop(hub.open("ann").unwrap());
    drain(&mut bob);
    tokio::time::sleep(grace - TIMER_TICK).await;
    let back = hub.open("ann").unwrap();
    let flap = next_within(&mut bob, grace * 3).await;
    assert_eq!(flap, None, "neither offline nor online again");

    drop(back);
    let closed = Instant::now();
    let offline = next_within(&mut bob, grace + 2 * TIMER_TICK)
        .await
        .expect("the next departure is announced");
    assert_eq!(offline["status"], "offline");
    assert!(closed.elapsed() >= grace, "{:?}", closed.elapsed());
    timers.cancel();
}

/// The timer task ends a typing indicator `ttl` after its last refresh (a refresh within the
/// interval is not forwarded but extends it), once.
#[tokio::test(start_paused = true)]
async fn the_timer_task_ends_typing_ttl_after_the_last_refresh() {
    let ttl = Duration::from_secs(5);
    let config = HubConfig {
        typing_ttl: ttl,
        typing_interval: Duration::from_secs(1),
        ..HubConfig::default()
    };
    let hub = hub_with(config, &[]);
    let timers = start_timers(&hub);
    let mut bob = hub.open("bob").unwrap();
    hub.typing("ann", "c", true, users(&["bob"]));
    assert_eq!(drain(&mut bob)[0]["typing"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.typing("ann", "c", true, users(&["bob"]));
    let refreshed = Instant::now();
    assert!(drain(&mut bob).is_empty(), "a refresh within the interval");

    let early = next_within(&mut bob, ttl - TIMER_TICK).await;
    assert_eq!(early, None, "the refresh extended the indicator");
    let ended = next_within(&mut bob, 2 * TIMER_TICK)
        .await
        .expect("typing:false once the indicator expired");
    assert_eq!(
        ended,
        serde_json::json!({"type": "typing", "conversationId": "c", "userId": "ann", "typing": false})
    );
    assert_due_on_time(refreshed, ttl);
    assert_eq!(next_within(&mut bob, ttl * 2).await, None, "ended once");
    timers.cancel();
}

/// With nothing to time, the timer task sleeps; a grace period or a typing indicator armed
/// after an idle stretch still comes due on time, and again after another idle stretch.
#[tokio::test(start_paused = true)]
async fn timers_armed_after_an_idle_stretch_come_due_on_time() {
    let grace = Duration::from_secs(5);
    let config = HubConfig {
        presence_grace: grace,
        typing_ttl: grace,
        ..HubConfig::default()
    };
    let hub = hub_with(config, &[("ann", "bob")]);
    let timers = start_timers(&hub);
    let mut bob = hub.open("bob").unwrap();
    for round in 0..2 {
        // Idle: nothing is armed, and nothing comes.
        assert_eq!(
            next_within(&mut bob, grace * 3).await,
            None,
            "round {round}"
        );

        hub.typing("ann", "c", true, users(&["bob"]));
        assert_eq!(drain(&mut bob)[0]["typing"], true);
        let typed = Instant::now();
        let ended = next_within(&mut bob, grace + 2 * TIMER_TICK)
            .await
            .expect("typing:false after an idle stretch");
        assert_eq!(ended["typing"], false);
        assert_due_on_time(typed, grace);
        assert_eq!(
            next_within(&mut bob, grace * 3).await,
            None,
            "round {round}"
        );

        drop(hub.open("ann").unwrap());
        assert_eq!(drain(&mut bob)[0]["status"], "online");
        let closed = Instant::now();
        let offline = next_within(&mut bob, grace + 2 * TIMER_TICK)
            .await
            .expect("offline after an idle stretch");
        assert_eq!(offline["status"], "offline");
        assert_due_on_time(closed, grace);
    }
    timers.cancel();
}
