"""The librdkafka scenarios of tests/integration/kafka_clients.rs, run with confluent-kafka 2.16.1
(which bundles librdkafka 2.16) against a running tidings server's Kafka listener.

    python kafka_librdkafka.py '{"scenario":"idempotent","broker":"127.0.0.1:PORT",...}'

Scenarios (each prints one JSON line; anything unexpected raises, which exits non-zero):
  group       -- two consumers join `group` on `topic` and wait until each owns partitions;
                 then an idempotent, lz4, acks=all producer sends `count` records of ~200 bytes;
                 the two consumers read until they have `count` records between them, commit,
                 and close. Prints {"produced", "read", "duplicates", "per_member", "delivery_errors"}.
  sasl        -- one producer per entry of `attempts` ({topic, mechanism?, token?}) sends one
                 record; prints {"outcomes": [null or the delivery error's name, ...]}.
  admin       -- AdminClient over SASL/PLAIN with an admin token: create, list, describe the
                 configs of, and delete `topic`.
  stream      -- an idempotent acks=all producer sends {"n": 0, 1, ...} until killed, printing
                 {"n", "partition", "offset"} for each acknowledged record.
  compression -- one producer per codec in `codecs` sends `count` records to `topic`; a consumer
                 assigned to every partition reads them back. Prints {"sent": {...}, "read": {...}}
                 with the values per codec.
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

config = json.loads(sys.argv[1])
# Each stage's own limit, well inside the test harness's 60 s: a stage that times out says
# which one it was (on stderr) before the harness gives up on the script.
TIMEOUT_S = 25


def fail(message):
    raise SystemExit(f"kafka_librdkafka.py: {message}")


def producer(**extra):
    settings = {"bootstrap.servers": config["broker"], "linger.ms": 5}
    settings.update(extra)
    return Producer(settings)


def produce(p, topic, records):
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    for key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(TIMEOUT_S)
    if left:
        fail(f"{left} records not delivered")
    return errors


def consumer(group):
    return Consumer(
        {
            "bootstrap.servers": config["broker"],
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        }
    )


def group_scenario():
    topic, count = config["topic"], config["count"]
    members = [consumer(config["group"]), consumer(config["group"])]
    for member in members:
        member.subscribe([topic])
    deadline = time.time() + TIMEOUT_S
    # Until both own partitions (the second join makes the first rejoin).
    while not all(m.assignment() for m in members):
        if time.time() > deadline:
            fail("the two members never both owned partitions")
        for member in members:
            msg = member.poll(0.1)
            if msg is not None and msg.error() is None:
                fail("a record arrived before any was produced")
    owned = [sorted(tp.partition for tp in m.assignment()) for m in members]
    p = producer(**{"enable.idempotence": True, "compression.type": "lz4", "acks": "all"})
    pad = "x" * 160
    records = [(f"key-{i % 50}", json.dumps({"n": i, "pad": pad})) for i in range(count)]
    errors = produce(p, topic, records)
    seen = set()
    duplicates = 0
    per_member = [0, 0]
    while len(seen) < count:
        if time.time() > deadline:
            fail(f"read {len(seen)} of {count}")
        for index, member in enumerate(members):
            msg = member.poll(0.05)
            if msg is None:
                continue
            if msg.error() is not None:
                fail(f"consumer error {msg.error()}")
            n = json.loads(msg.value())["n"]
            if n in seen:
                duplicates += 1
            seen.add(n)
            per_member[index] += 1
    for member in members:
        member.commit(asynchronous=False)
        member.close()
    print(json.dumps({
        "produced": count,
        "read": len(seen),
        "duplicates": duplicates,
        "per_member": per_member,
        "owned": owned,
        "delivery_errors": errors,
    }))


def compression_scenario():
    topic, count = config["topic"], config["count"]
    sent = {}
    for codec in config["codecs"]:
        p = producer(**{"compression.type": codec, "acks": "all"})
        values = [json.dumps({"codec": codec, "n": i}) for i in range(count)]
        errors = produce(p, topic, [(codec, v) for v in values])
        if errors:
            fail(f"{codec}: {errors}")
        sent[codec] = values
    c = consumer("compression-check")
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    read = {codec: [] for codec in config["codecs"]}
    total = count * len(config["codecs"])
    got = 0
    deadline = time.time() + TIMEOUT_S
    while got < total:
        if time.time() > deadline:
            fail(f"read {got} of {total}")
        msg = c.poll(0.1)
        if msg is None:
            continue
        if msg.error() is not None:
            fail(f"consumer error {msg.error()}")
        read[msg.key().decode()].append(msg.value().decode())
        got += 1
    c.close()
    print(json.dumps({"sent": sent, "read": read}))


def sasl_settings(mechanism, token):
    settings = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism}
    if mechanism == "PLAIN":
        settings.update({"sasl.username": "someone", "sasl.password": token})
    else:
        settings["oauth_cb"] = lambda _config: (token, time.time() + 3600)
    return settings


def try_produce(topic, settings):
    """One record to `topic`; the delivery error's name, or None once it is stored."""
    # log_level 0: the refused attempts would fill the test output with retries.
    p = producer(**settings, **{"acks": "all", "message.timeout.ms": 10000, "log_level": 0})
    outcome = {}

    def delivered(err, _msg):
        outcome["error"] = None if err is None else err.name()

    p.produce(topic, key="k", value='{"sasl": true}', on_delivery=delivered)
    p.flush(15)
    return outcome.get("error", "NOT_DELIVERED")


def sasl_scenario():
    """Produces with each (mechanism, token) of `attempts`; prints the outcome of each."""
    outcomes = []
    for attempt in config["attempts"]:
        settings = sasl_settings(attempt["mechanism"], attempt["token"]) if attempt.get("mechanism") else {}
        outcomes.append(try_produce(attempt["topic"], settings))
    print(json.dumps({"outcomes": outcomes}))


def admin_scenario():
    """Creates `topic` with 3 partitions and a retention, describes its configs, lists it,
    deletes it, all with an admin token over SASL/PLAIN."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": config["broker"], **sasl_settings("PLAIN", config["token"])})
    topic = config["topic"]
    created = admin.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "60000"})])
    created[topic].result(15)
    listed = admin.list_topics(timeout=10).topics
    partitions = len(listed[topic].partitions)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(15)
    retention = described["retention.ms"].value
    duplicate = admin.create_topics([NewTopic(topic, 1, 1)])
    try:
        duplicate[topic].result(15)
        duplicate_error = None
    except Exception as e:  # KafkaException carrying a KafkaError
        duplicate_error = e.args[0].name()
    admin.delete_topics([topic])[topic].result(15)
    after = topic in admin.list_topics(timeout=10).topics
    print(json.dumps({
        "partitions": partitions,
        "retention_ms": retention,
        "duplicate_error": duplicate_error,
        "exists_after_delete": after,
    }))


def stream_scenario():
    """Produces {"n": 0, 1, ...} to `topic` until killed, printing each acknowledged record."""
    p = producer(**{"acks": "all", "enable.idempotence": True, "linger.ms": 1, "log_level": 0})

    def delivered(n):
        def report(err, msg):
            if err is None:
                print(json.dumps({"n": n, "partition": msg.partition(), "offset": msg.offset()}), flush=True)
        return report

    n = 0
    while True:
        try:
            p.produce(config["topic"], key=f"k{n % 8}", value=json.dumps({"n": n}), on_delivery=delivered(n))
            n += 1
        except BufferError:
            pass
        p.poll(0.002)


{
    "stream": stream_scenario,
    "group": group_scenario,
    "compression": compression_scenario,
    "sasl": sasl_scenario,
    "admin": admin_scenario,
}[config["scenario"]]()
