//! The event bus's topic and record routes end to end against the real binary: create, list,
//! describe and delete topics; publish batches and read them back (long-poll included); the
//! limits, the scopes and chat's internal topics; and that a rejected request changes nothing.

use crate::common;

use std::time::{Duration, Instant};

use common::bus::{Bus, ADMIN, BOTH, CONSUMER, NONE, PUBLISHER};
use common::chat::problem;
use reqwest::Method;
use serde_json::{json, Value};

impl Bus {
    /// The read page at `query`; panics unless 200.
    async fn read(&self, topic: &str, partition: u32, query: &str) -> Value {
        let response = self
            .get(
                CONSUMER,
                &format!("/api/topics/{topic}/partitions/{partition}/records{query}"),
            )
            .await;
        assert_eq!(response.status(), 200, "read {topic}/{partition}{query}");
        response.json().await.expect("page JSON")
    }

    async fn topic(&self, name: &str) -> Value {
        let response = self.get(CONSUMER, &format!("/api/topics/{name}")).await;
        assert_eq!(response.status(), 200, "describe {name}");
        response.json().await.expect("topic JSON")
    }

    async fn names(&self, scopes: &[&str]) -> Vec<String> {
        let response = self.get(scopes, "/api/topics").await;
        assert_eq!(response.status(), 200, "list");
        let body: Value = response.json().await.expect("list JSON");
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_owned())
            .collect()
    }
}

#[tokio::test]
async fn topics_are_created_listed_described_and_deleted() {
    let bus = Bus::start(&[]).await;
    let created = bus
        .post(
            PUBLISHER,
            "/api/topics",
            json!({"name": "orders.created", "partitions": 3, "retentionMs": 60000}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created,
        json!({
            "name": "orders.created",
            "partitions": [
                {"partition": 0, "low": 0, "high": 0},
                {"partition": 1, "low": 0, "high": 0},
                {"partition": 2, "low": 0, "high": 0},
            ],
            "retentionMs": 60000,
            "retentionBytes": null,
        })
    );
    assert_eq!(bus.topic("orders.created").await, created);

    let taken = bus
        .post(
            PUBLISHER,
            "/api/topics",
            json!({"name": "orders.created", "partitions": 1}),
        )
        .await;
    problem(taken, 409).await;

    bus.create("audit", 1).await;
    let names = bus.names(CONSUMER).await;
    assert!(names.contains(&"audit".to_owned()) && names.contains(&"orders.created".to_owned()));
    assert!(
        names.contains(&"messages.sent".to_owned()),
        "chat's events are listed for consumers"
    );
    assert!(
        !names.contains(&"messages".to_owned()),
        "chat's command topic is hidden from non-admins"
    );
    assert!(bus.names(ADMIN).await.contains(&"messages".to_owned()));

    problem(bus.delete(BOTH, "/api/topics/audit").await, 403).await;
    assert_eq!(bus.delete(ADMIN, "/api/topics/audit").await.status(), 204);
    problem(bus.get(CONSUMER, "/api/topics/audit").await, 404).await;
    problem(bus.delete(ADMIN, "/api/topics/audit").await, 404).await;
    assert!(!bus.names(CONSUMER).await.contains(&"audit".to_owned()));
}

#[tokio::test]
async fn a_batch_reads_back_with_offsets_keys_headers_and_json_values() {
    let bus = Bus::start(&[]).await;
    bus.create("orders", 1).await;
    let values = [
        json!({"id": 1, "total": 9.5, "items": ["a", "b"]}),
        json!("plain string"),
        json!(null),
        json!([1, {"nested": true}]),
    ];
    let offsets = bus
        .publish(
            "orders",
            json!([
                {"key": "cust-1", "headers": {"trace": "t-1", "kind": "created"}, "value": values[0]},
                {"value": values[1]},
                {"key": "cust-2", "value": values[2]},
                {"value": values[3]},
            ]),
        )
        .await;
    assert_eq!(
        offsets,
        (0..4)
            .map(|o| json!({"partition": 0, "offset": o}))
            .collect::<Vec<_>>()
    );

    let page = bus.read("orders", 0, "?offset=0").await;
    assert_eq!(page["nextOffset"], 4);
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 4);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["topic"], "orders");
        assert_eq!(record["partition"], 0);
        assert_eq!(record["offset"], i);
        assert_eq!(record["value"], values[i], "value {i}");
        let timestamp = record["timestamp"].as_str().unwrap();
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
    }
    assert_eq!(records[0]["key"], "cust-1");
    assert_eq!(
        records[0]["headers"],
        json!({"trace": "t-1", "kind": "created"})
    );
    assert_eq!(records[1]["key"], Value::Null);
    assert_eq!(records[1]["headers"], json!({}));
    assert_eq!(records[2]["key"], "cust-2");

    let paged = bus.read("orders", 0, "?offset=1&limit=2").await;
    assert_eq!(paged["nextOffset"], 3);
    assert_eq!(paged["records"].as_array().unwrap().len(), 2);
    assert_eq!(paged["records"][0]["offset"], 1);
    let from_start = bus.read("orders", 0, "").await;
    assert_eq!(
        from_start["records"].as_array().unwrap().len(),
        4,
        "offset defaults to low"
    );
    let at_end = bus.read("orders", 0, "?offset=4").await;
    assert_eq!(at_end, json!({"records": [], "nextOffset": 4}));
    let described = bus.topic("orders").await;
    assert_eq!(described["partitions"][0]["high"], 4);
}

#[tokio::test]
async fn keyed_records_keep_their_partition_across_a_multi_partition_topic() {
    let bus = Bus::start(&[]).await;
    bus.create("keyed", 4).await;
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("k{}", i % 3), "value": i}))
        .collect();
    let offsets = bus.publish("keyed", Value::Array(batch)).await;
    assert_eq!(offsets.len(), 20);
    for (i, position) in offsets.iter().enumerate().skip(3) {
        assert_eq!(
            position["partition"],
            offsets[i % 3]["partition"],
            "one key, one partition"
        );
    }
    let topic = bus.topic("keyed").await;
    let total: u64 = topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 20);
}

#[tokio::test]
async fn a_batch_published_to_a_partition_lands_there_whatever_its_keys() {
    // Proves POST /api/topics/{name}/partitions/{p}/records: every record in p, in order; an
    // unknown partition is 404, a malformed one 400, and publishing still needs its scope.
    let bus = Bus::start(&[]).await;
    bus.create("direct", 3).await;
    let batch =
        json!({"records": [{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"value": 3}]});
    let path = "/api/topics/direct/partitions/2/records";
    let published = bus.post(PUBLISHER, path, batch.clone()).await;
    assert_eq!(published.status(), 202);
    let published: Value = published.json().await.unwrap();
    assert_eq!(
        published,
        json!({"offsets": [{"partition": 2, "offset": 0}, {"partition": 2, "offset": 1},
                           {"partition": 2, "offset": 2}]})
    );
    let page = bus.read("direct", 2, "").await;
    let values = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"]);
    assert_eq!(
        values.collect::<Vec<_>>(),
        [&json!(1), &json!(2), &json!(3)]
    );
    for (scopes, partition, status) in [
        (PUBLISHER, "3", 404),
        (PUBLISHER, "x", 400),
        (CONSUMER, "2", 403),
    ] {
        let path = format!("/api/topics/direct/partitions/{partition}/records");
        problem(bus.post(scopes, &path, batch.clone()).await, status).await;
    }
    assert_eq!(
        bus.read("direct", 2, "").await["nextOffset"],
        3,
        "nothing more"
    );
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_record_is_published() {
    let bus = std::sync::Arc::new(Bus::start(&[]).await);
    bus.create("live", 1).await;
    let publisher = bus.clone();
    let publish = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publisher
            .publish("live", json!([{"value": {"hello": "world"}}]))
            .await
    });
    let started = Instant::now();
    let page = bus.read("live", 0, "?offset=0&waitMs=20000").await;
    let waited = started.elapsed();
    publish.await.unwrap();
    assert_eq!(page["records"][0]["value"], json!({"hello": "world"}));
    assert_eq!(page["nextOffset"], 1);
    assert!(
        waited >= Duration::from_millis(250),
        "it waited for the record: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "it did not wait out waitMs: {waited:?}"
    );

    let started = Instant::now();
    let empty = bus.read("live", 0, "?offset=1&waitMs=400").await;
    let waited = started.elapsed();
    assert_eq!(empty, json!({"records": [], "nextOffset": 1}));
    assert!(
        waited >= Duration::from_millis(350),
        "waited out waitMs: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn offsets_outside_the_retained_range_are_416() {
    let bus = Bus::start(&[]).await;
    bus.create("short", 1).await;
    bus.publish("short", json!([{"value": 1}, {"value": 2}]))
        .await;
    let path = "/api/topics/short/partitions/0/records?offset=3";
    let answer = problem(bus.get(CONSUMER, path).await, 416).await;
    assert_eq!(answer["type"], "urn:tidings:problem:offset-out-of-range");
    assert!(
        answer["detail"].as_str().unwrap().contains("0..2"),
        "{answer}"
    );
    let waiting = bus.get(CONSUMER, &format!("{path}&waitMs=5000")).await;
    problem(waiting, 416).await;
}

#[tokio::test]
async fn invalid_input_is_400_naming_the_field_and_unknown_topics_404() {
    let bus = Bus::start(&[]).await;
    bus.create("valid", 2).await;
    let cases = [
        (json!({"name": "bad name", "partitions": 1}), "name"),
        (json!({"name": "", "partitions": 1}), "name"),
        (json!({"name": "t", "partitions": 0}), "partitions"),
        (json!({"name": "t", "partitions": 5000}), "partitions"),
        (json!({"name": "t"}), "partitions"),
        (json!({"name": "t", "partitions": "two"}), "partitions"),
        (
            json!({"name": "t", "partitions": 1, "retentionMs": 0}),
            "retentionMs",
        ),
        (
            json!({"name": "t", "partitions": 1, "retentionBytes": -1}),
            "retentionBytes",
        ),
        (
            json!({"name": "t", "partitions": 1, "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let answer = problem(bus.post(PUBLISHER, "/api/topics", body.clone()).await, 400).await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{body}: {detail}");
    }
    let publishes = [
        (json!({"records": []}), "record"),
        (json!({"records": [{"key": 1, "value": 1}]}), "key"),
        (
            json!({"records": [{"headers": {"h": 1}, "value": 1}]}),
            "headers",
        ),
        (json!({"records": [{"key": "k"}]}), "value"),
        (json!({}), "records"),
    ];
    for (body, field) in publishes {
        let response = bus
            .post(PUBLISHER, "/api/topics/valid/records", body.clone())
            .await;
        let answer = problem(response, 400).await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{body}: {detail}");
    }
    let reads = [
        ("/api/topics/valid/partitions/x/records", "partition"),
        ("/api/topics/valid/partitions/0/records?offset=-1", "offset"),
        ("/api/topics/valid/partitions/0/records?limit=0", "limit"),
        ("/api/topics/valid/partitions/0/records?limit=5000", "limit"),
        (
            "/api/topics/valid/partitions/0/records?waitMs=soon",
            "waitMs",
        ),
        ("/api/topics/bad%20name/partitions/0/records", "topic name"),
    ];
    for (path, field) in reads {
        let answer = problem(bus.get(CONSUMER, path).await, 400).await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{path}: {detail}");
    }
    problem(bus.get(CONSUMER, "/api/topics/nope").await, 404).await;
    problem(
        bus.get(CONSUMER, "/api/topics/nope/partitions/0/records")
            .await,
        404,
    )
    .await;
    problem(
        bus.get(CONSUMER, "/api/topics/valid/partitions/2/records")
            .await,
        404,
    )
    .await;
    let unknown = bus
        .post(
            PUBLISHER,
            "/api/topics/nope/records",
            json!({"records": [{"value": 1}]}),
        )
        .await;
    problem(unknown, 404).await;
    assert!(
        !bus.names(CONSUMER).await.contains(&"nope".to_owned()),
        "publishing does not create topics"
    );
}

#[tokio::test]
async fn oversized_records_and_batches_are_413_and_change_nothing() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[limits]\nmaxRecordBytes = 1000\nmaxBatchRecords = 5\n",
    )
    .unwrap();
    let path = config.path().to_str().unwrap().to_owned();
    let bus = Bus::start(&["--config", &path]).await;
    bus.create("capped", 1).await;
    bus.publish("capped", json!([{"value": "first"}])).await;

    let big = "x".repeat(1000);
    let oversized = json!({"records": [{"value": 1}, {"value": big}]});
    let answer = problem(
        bus.post(PUBLISHER, "/api/topics/capped/records", oversized)
            .await,
        413,
    )
    .await;
    assert!(
        answer["detail"].as_str().unwrap().contains("1000"),
        "{answer}"
    );
    let batch: Vec<Value> = (0..6).map(|i| json!({"value": i})).collect();
    let too_many = json!({ "records": batch });
    let answer = problem(
        bus.post(PUBLISHER, "/api/topics/capped/records", too_many)
            .await,
        413,
    )
    .await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("maxBatchRecords"),
        "{answer}"
    );
    let at_limit: Vec<Value> = (0..5).map(|i| json!({"value": i})).collect();
    assert_eq!(bus.publish("capped", Value::Array(at_limit)).await.len(), 5);
    assert_eq!(
        bus.topic("capped").await["partitions"][0]["high"],
        6,
        "only the accepted batches were written"
    );
}

#[tokio::test]
async fn scopes_and_tokens_guard_every_route() {
    let bus = Bus::start(&[]).await;
    bus.create("guarded", 1).await;
    let body = || Some(json!({"records": [{"value": 1}]}));
    let routes: [(Method, &str, Option<Value>, &[&str]); 5] = [
        (
            Method::POST,
            "/api/topics",
            Some(json!({"name": "other", "partitions": 1})),
            CONSUMER,
        ),
        (Method::GET, "/api/topics", None, PUBLISHER),
        (Method::GET, "/api/topics/guarded", None, PUBLISHER),
        (
            Method::POST,
            "/api/topics/guarded/records",
            body(),
            CONSUMER,
        ),
        (
            Method::GET,
            "/api/topics/guarded/partitions/0/records",
            None,
            PUBLISHER,
        ),
    ];
    for (method, path, body, wrong_scope) in routes {
        let unauthenticated = bus.call(None, method.clone(), path, body.clone()).await;
        assert_eq!(
            unauthenticated.headers()["www-authenticate"],
            "Bearer",
            "{method} {path}"
        );
        problem(unauthenticated, 401).await;
        let chat_user = bus
            .call(Some(NONE), method.clone(), path, body.clone())
            .await;
        let answer = problem(chat_user, 403).await;
        assert_eq!(
            answer["type"], "urn:tidings:problem:forbidden",
            "{method} {path}"
        );
        problem(
            bus.call(Some(wrong_scope), method.clone(), path, body)
                .await,
            403,
        )
        .await;
    }
    problem(
        bus.call(None, Method::DELETE, "/api/topics/guarded", None)
            .await,
        401,
    )
    .await;
    problem(bus.delete(NONE, "/api/topics/guarded").await, 403).await;
    assert!(
        !bus.names(ADMIN).await.contains(&"other".to_owned()),
        "nothing was created"
    );
    assert_eq!(bus.topic("guarded").await["partitions"][0]["high"], 0);
}

#[tokio::test]
async fn chat_topics_are_guarded_unless_admin() {
    let bus = Bus::start(&[]).await;
    bus.chat.conversation("ann", "c1", &["bob"]).await;
    bus.chat.send("ann", "c1", "hello").await;
    let all = &["events:publish", "events:consume"][..];
    let records = json!({"records": [{"value": 1}]});

    for topic in ["messages", "messages.sent", "message.new"] {
        let create = json!({"name": topic, "partitions": 1});
        problem(bus.post(all, "/api/topics", create).await, 403).await;
        let publish = bus
            .post(
                all,
                &format!("/api/topics/{topic}/records"),
                records.clone(),
            )
            .await;
        problem(publish, 403).await;
        problem(bus.delete(all, &format!("/api/topics/{topic}")).await, 403).await;
    }
    problem(bus.get(all, "/api/topics/messages").await, 403).await;
    let read_commands = bus
        .get(all, "/api/topics/messages/partitions/0/records")
        .await;
    let answer = problem(read_commands, 403).await;
    assert!(
        answer["detail"].as_str().unwrap().contains("admin"),
        "{answer}"
    );

    let events = bus.topic("messages.sent").await;
    let partitions = events["partitions"].as_array().unwrap().len() as u32;
    let deadline = Instant::now() + Duration::from_secs(5);
    let event = 'found: loop {
        for p in 0..partitions {
            let page = bus.read("messages.sent", p, "?offset=0").await;
            if let Some(event) = page["records"].as_array().unwrap().first() {
                break 'found event.clone();
            }
        }
        assert!(Instant::now() < deadline, "no MessageSent event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(event["key"], "c1");
    assert_eq!(event["value"]["eventType"], "MessageSent");
    assert_eq!(event["value"]["message"]["content"], "hello");

    let admin_read = bus
        .get(ADMIN, "/api/topics/messages/partitions/0/records")
        .await;
    assert_eq!(admin_read.status(), 200);
    assert_eq!(bus.get(ADMIN, "/api/topics/messages").await.status(), 200);
}

#[tokio::test]
async fn a_waiting_long_poll_does_not_delay_shutdown() {
    let mut bus = Bus::start(&[]).await;
    bus.create("quiet", 1).await;
    let request = bus
        .http
        .get(format!(
            "{}/api/topics/quiet/partitions/0/records?offset=0&waitMs=30000",
            bus.chat.server.base
        ))
        .bearer_auth(bus.auth.issue(
            "svc",
            None,
            &["events:consume".into()],
            Duration::from_secs(60),
        ))
        .send();
    let waiting = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    common::server::sigterm(&bus.chat.server);
    let status = common::server::wait_exit(&mut bus.chat.server, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let answer = waiting
        .await
        .unwrap()
        .expect("answered before the server exited");
    assert_eq!(answer.status(), 200);
    let page: Value = answer.json().await.unwrap();
    assert_eq!(page, json!({"records": [], "nextOffset": 0}));
}
