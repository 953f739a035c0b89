//! Consumer groups over HTTP end to end against the real binary: members share a topic's
//! partitions, take over from the committed offsets after a leave or an expiry without losing a
//! record, subscribe with patterns (picking up topics created later), long-poll, and are
//! refused bad input without any change to the committed offsets.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::bus::{Bus, ADMIN, CONSUMER, PUBLISHER};
use common::chat::problem;
use reqwest::{Method, Response};
use serde_json::{json, Value};

type Tp = (String, u64);

impl Bus {
    /// Publishes `n` unkeyed records; returns their (partition, offset)s.
    async fn publish_n(&self, topic: &str, n: usize) -> Vec<(u64, u64)> {
        let records: Vec<Value> = (0..n).map(|i| json!({"value": {"i": i}})).collect();
        self.publish(topic, json!(records))
            .await
            .iter()
            .map(|o| {
                (
                    o["partition"].as_u64().expect("p"),
                    o["offset"].as_u64().expect("o"),
                )
            })
            .collect()
    }

    async fn join_as(&self, scopes: &[&str], group: &str, body: Value) -> (String, Value) {
        let response = self
            .post(scopes, &format!("/api/groups/{group}/members"), body)
            .await;
        assert_eq!(response.status(), 200, "join {group}");
        let body: Value = response.json().await.expect("join JSON");
        (
            body["memberId"].as_str().expect("memberId").to_owned(),
            body["assignment"].clone(),
        )
    }

    async fn join(&self, group: &str, body: Value) -> String {
        self.join_as(CONSUMER, group, body).await.0
    }

    async fn poll(&self, group: &str, member: &str, wait_ms: u64) -> Value {
        let path = format!("/api/groups/{group}/members/{member}/poll");
        let response = self
            .post(CONSUMER, &path, json!({"limit": 1000, "waitMs": wait_ms}))
            .await;
        assert_eq!(response.status(), 200, "poll {group}/{member}");
        response.json().await.expect("poll JSON")
    }

    async fn commit(&self, group: &str, member: &str, offsets: Value) -> Response {
        let body = json!({"memberId": member, "offsets": offsets});
        self.post(CONSUMER, &format!("/api/groups/{group}/offsets"), body)
            .await
    }

    async fn leave(&self, group: &str, member: &str) -> Response {
        let path = format!("/api/groups/{group}/members/{member}");
        self.call(Some(CONSUMER), Method::DELETE, &path, None).await
    }

    async fn describe(&self, group: &str) -> Value {
        let response = self
            .call(
                Some(CONSUMER),
                Method::GET,
                &format!("/api/groups/{group}"),
                None,
            )
            .await;
        assert_eq!(response.status(), 200, "describe {group}");
        response.json().await.expect("group JSON")
    }
}

fn partitions_of(assignment: &Value) -> BTreeSet<Tp> {
    assignment
        .as_array()
        .expect("assignment")
        .iter()
        .map(|a| {
            (
                a["topic"].as_str().expect("topic").to_owned(),
                a["partition"].as_u64().expect("p"),
            )
        })
        .collect()
}

fn record_keys(poll: &Value) -> BTreeSet<(u64, u64)> {
    poll["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().expect("p"),
                r["offset"].as_u64().expect("o"),
            )
        })
        .collect()
}

fn topics_of(poll: &Value) -> BTreeSet<String> {
    poll["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["topic"].as_str().expect("topic").to_owned())
        .collect()
}

#[tokio::test]
async fn members_share_partitions_and_a_leave_hands_over_the_uncommitted_records() {
    let bus = Bus::start(&[]).await;
    bus.create("orders", 4).await;
    let a = bus.join("g", json!({"topics": ["orders"]})).await;
    let b = bus.join("g", json!({"topics": ["orders"]})).await;
    let published: BTreeSet<(u64, u64)> = bus.publish_n("orders", 12).await.into_iter().collect();
    let poll_a = bus.poll("g", &a, 0).await;
    let poll_b = bus.poll("g", &b, 0).await;
    let (own_a, own_b) = (
        partitions_of(&poll_a["assignment"]),
        partitions_of(&poll_b["assignment"]),
    );
    assert_eq!(own_a.len(), 2, "{own_a:?}");
    assert!(own_a.is_disjoint(&own_b));
    let all: BTreeSet<Tp> = own_a.union(&own_b).cloned().collect();
    assert_eq!(all, (0..4).map(|p| ("orders".to_owned(), p)).collect());
    // A commits only the first record of each of its partitions, then leaves.
    let got_a = record_keys(&poll_a);
    assert!(got_a
        .iter()
        .all(|(p, _)| own_a.contains(&("orders".to_owned(), *p))));
    let firsts: Vec<(u64, u64)> = own_a
        .iter()
        .filter_map(|(_, p)| got_a.iter().find(|(q, _)| q == p).copied())
        .collect();
    let offsets: Vec<Value> = firsts
        .iter()
        .map(|(p, o)| json!({"topic": "orders", "partition": p, "offset": o + 1}))
        .collect();
    assert_eq!(bus.commit("g", &a, json!(offsets)).await.status(), 204);
    assert_eq!(bus.leave("g", &a).await.status(), 204);
    // B restarts from the committed offsets: everything but what A committed.
    let after = bus.poll("g", &b, 0).await;
    assert_eq!(partitions_of(&after["assignment"]).len(), 4);
    let expected: BTreeSet<(u64, u64)> = published
        .difference(&firsts.into_iter().collect())
        .copied()
        .collect();
    assert_eq!(record_keys(&after), expected);
    assert!(after["records"][0]["value"]["i"].is_u64());
    // Its position moved on: the next poll is empty.
    assert_eq!(record_keys(&bus.poll("g", &b, 0).await).len(), 0);
    let described = bus.describe("g").await;
    assert_eq!(described["members"].as_array().expect("members").len(), 1);
}

#[tokio::test]
async fn a_member_that_stops_polling_loses_its_partitions() {
    let bus = Bus::start(&[]).await;
    bus.create("jobs", 4).await;
    let a = bus
        .join("w", json!({"topics": ["jobs"], "sessionTimeoutMs": 300}))
        .await;
    let b = bus.join("w", json!({"topics": ["jobs"]})).await;
    bus.publish_n("jobs", 8).await;
    let poll_a = bus.poll("w", &a, 0).await;
    assert_eq!(partitions_of(&poll_a["assignment"]).len(), 2);
    let read: BTreeSet<u64> = record_keys(&poll_a).iter().map(|(p, _)| *p).collect();
    let offsets: Vec<Value> = read
        .iter()
        .map(|p| json!({"topic": "jobs", "partition": p, "offset": 1}))
        .collect();
    assert_eq!(bus.commit("w", &a, json!(offsets)).await.status(), 204);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let poll_b = bus.poll("w", &b, 0).await;
    assert_eq!(partitions_of(&poll_b["assignment"]).len(), 4);
    // A had committed the first record of each partition it read.
    assert_eq!(record_keys(&poll_b).len(), 8 - read.len());
    let gone = bus
        .post(
            CONSUMER,
            &format!("/api/groups/w/members/{a}/poll"),
            json!({}),
        )
        .await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn patterns_match_words_and_pick_up_topics_created_later() {
    let bus = Bus::start(&[]).await;
    for topic in ["order.created", "user.registered", "order.created.v2"] {
        bus.create(topic, 1).await;
        bus.publish_n(topic, 1).await;
    }
    let (star, assigned) = bus
        .join_as(CONSUMER, "star", json!({"topics": ["order.*"]}))
        .await;
    assert_eq!(
        partitions_of(&assigned),
        [("order.created".to_owned(), 0)].into()
    );
    let poll = bus.poll("star", &star, 0).await;
    assert_eq!(topics_of(&poll), ["order.created".to_owned()].into());
    let done = json!([{"topic": "order.created", "partition": 0, "offset": 1}]);
    assert_eq!(bus.commit("star", &star, done).await.status(), 204);
    let hash = bus.join("hash", json!({"topics": ["order.#"]})).await;
    let poll = bus.poll("hash", &hash, 0).await;
    assert_eq!(
        topics_of(&poll),
        ["order.created".to_owned(), "order.created.v2".to_owned()].into()
    );
    // A topic created after the join that matches is assigned at the next poll (a rebalance:
    // the member goes back to its committed offsets, so only the new record comes).
    bus.create("order.shipped", 1).await;
    bus.publish_n("order.shipped", 1).await;
    let poll = bus.poll("star", &star, 0).await;
    assert!(partitions_of(&poll["assignment"]).contains(&("order.shipped".to_owned(), 0)));
    assert_eq!(topics_of(&poll), ["order.shipped".to_owned()].into());
    // `#` never hands chat's command topic to a non-admin; it does to admin.
    let (_, everything) = bus.join_as(CONSUMER, "all", json!({"topics": ["#"]})).await;
    assert!(!partitions_of(&everything)
        .iter()
        .any(|(t, _)| t == "messages"));
    let (_, admin) = bus
        .join_as(ADMIN, "all-admin", json!({"topics": ["#"]}))
        .await;
    assert!(partitions_of(&admin).iter().any(|(t, _)| t == "messages"));
    let named = bus
        .post(
            CONSUMER,
            "/api/groups/x/members",
            json!({"topics": ["messages"]}),
        )
        .await;
    assert_eq!(named.status(), 403);
}

#[tokio::test]
async fn a_poll_waits_for_the_first_record_and_no_longer() {
    let bus = Bus::start(&[]).await;
    bus.create("ticks", 3).await;
    let m = bus.join("lp", json!({"topics": ["ticks"]})).await;
    let started = Instant::now();
    let empty = bus.poll("lp", &m, 400).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(record_keys(&empty).len(), 0);
    let bus = std::sync::Arc::new(bus);
    let waiting = {
        let (bus, m) = (bus.clone(), m.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let poll = bus.poll("lp", &m, 10_000).await;
            (poll, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish_n("ticks", 1).await;
    let (poll, elapsed) = waiting.await.expect("poll task");
    assert_eq!(record_keys(&poll).len(), 1);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let bus = Bus::start(&[]).await;
    bus.create("pay", 2).await;
    bus.publish_n("pay", 4).await;
    let a = bus.join("bad", json!({"topics": ["pay"]})).await;
    let b = bus.join("bad", json!({"topics": ["pay"]})).await;
    let mine = partitions_of(&bus.poll("bad", &a, 0).await["assignment"]);
    let theirs = partitions_of(&bus.poll("bad", &b, 0).await["assignment"]);
    let (p, q) = (
        mine.iter().next().expect("a owns one").1,
        theirs.iter().next().expect("b owns one").1,
    );
    let ok = bus
        .commit(
            "bad",
            &a,
            json!([{"topic": "pay", "partition": p, "offset": 1}]),
        )
        .await;
    assert_eq!(ok.status(), 204);
    let before = bus.describe("bad").await["offsets"].clone();

    let invalid = bus
        .post(
            CONSUMER,
            "/api/groups/bad*name/members",
            json!({"topics": ["pay"]}),
        )
        .await;
    assert_eq!(invalid.status(), 400);
    let unknown = bus
        .post(CONSUMER, "/api/groups/bad/members/nobody/poll", json!({}))
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        bus.commit(
            "bad",
            "nobody",
            json!([{"topic": "pay", "partition": p, "offset": 2}])
        )
        .await
        .status(),
        404
    );
    let beyond = bus
        .commit(
            "bad",
            &a,
            json!([{"topic": "pay", "partition": p, "offset": 99}]),
        )
        .await;
    assert_eq!(beyond.status(), 416);
    let not_mine = bus.commit("bad", &a, json!([{"topic": "pay", "partition": p, "offset": 2}, {"topic": "pay", "partition": q, "offset": 1}])).await;
    assert_eq!(not_mine.status(), 409);
    let back = bus
        .commit(
            "bad",
            &a,
            json!([{"topic": "pay", "partition": p, "offset": 0}]),
        )
        .await;
    assert_eq!(back.status(), 409);
    let body = json!({"memberId": a, "offsets": [{"topic": "pay", "partition": p, "offset": 2}]});
    let scope = bus
        .post(PUBLISHER, "/api/groups/bad/offsets", body.clone())
        .await;
    assert_eq!(scope.status(), 403);
    let anonymous = bus
        .call(None, Method::POST, "/api/groups/bad/offsets", Some(body))
        .await;
    assert_eq!(anonymous.status(), 401);
    let join = bus
        .post(
            PUBLISHER,
            "/api/groups/bad/members",
            json!({"topics": ["pay"]}),
        )
        .await;
    assert_eq!(join.status(), 403);
    assert_eq!(bus.describe("bad").await["offsets"], before);
    assert_eq!(
        bus.describe("bad").await["members"]
            .as_array()
            .expect("members")
            .len(),
        2
    );
    assert_eq!(bus.leave("bad", "nobody").await.status(), 404);
    let listed = bus
        .call(Some(CONSUMER), Method::GET, "/api/groups", None)
        .await;
    let listed: Value = listed.json().await.expect("list");
    assert!(listed["items"]
        .as_array()
        .expect("items")
        .contains(&json!({"group": "bad"})));
}

#[tokio::test]
async fn an_admin_reset_moves_an_idle_group_and_is_refused_while_members_live() {
    // Proves POST /api/groups/{group}/offsets/reset: admin only, 409 while the group has a live
    // member (403 for the server's own store group), 400/404 on bad input, and that a refused
    // reset changes nothing while an accepted one moves every partition.
    let bus = Bus::start(&[]).await;
    bus.create("r", 2).await;
    bus.publish_n("r", 6).await;
    let reset = |to: Value| json!({"topic": "r", "to": to});
    let path = "/api/groups/idle/offsets/reset";
    let a = bus.join("idle", json!({"topics": ["r"]})).await;
    let poll = bus.poll("idle", &a, 0).await;
    let offsets: Vec<Value> = (0..2)
        .map(|p| json!({"topic": "r", "partition": p, "offset": 1}))
        .collect();
    assert_eq!(bus.commit("idle", &a, json!(offsets)).await.status(), 204);
    assert_eq!(record_keys(&poll).len(), 6);
    let before = bus.describe("idle").await["offsets"].clone();

    let refused = bus.post(CONSUMER, path, reset(json!("earliest"))).await;
    problem(refused, 403).await;
    let live = bus.post(ADMIN, path, reset(json!("earliest"))).await;
    let detail = problem(live, 409).await["detail"].clone();
    assert!(
        detail.as_str().unwrap().contains("1 live member"),
        "{detail}"
    );
    for (body, status) in [
        (reset(json!("soon")), 400),
        (reset(json!(-1)), 400),
        (reset(json!(true)), 400),
        (json!({"topic": "r"}), 400),
        (json!({"topic": "r", "to": 0, "extra": 1}), 400),
        (json!({"topic": "nope", "to": 0}), 404),
    ] {
        problem(bus.post(ADMIN, path, body.clone()).await, status).await;
    }
    let store = bus
        .post(ADMIN, "/api/groups/store/offsets/reset", reset(json!(0)))
        .await;
    problem(store, 403).await;
    assert_eq!(
        bus.describe("idle").await["offsets"],
        before,
        "nothing moved"
    );

    assert_eq!(bus.leave("idle", &a).await.status(), 204);
    let moved = bus.post(ADMIN, path, reset(json!("latest"))).await;
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.expect("reset JSON");
    assert_eq!(
        moved,
        json!({"group": "idle", "topic": "r",
               "offsets": [{"partition": 0, "offset": 3}, {"partition": 1, "offset": 3}]})
    );
    let early = bus
        .post(ADMIN, path, reset(json!("2000-01-01T00:00:00Z")))
        .await;
    assert_eq!(early.status(), 200);
    let committed: Vec<Value> = bus.describe("idle").await["offsets"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["committed"].clone())
        .collect();
    assert_eq!(committed, vec![json!(0), json!(0)]);
}
