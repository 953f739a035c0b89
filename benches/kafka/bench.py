"""Kafka-protocol throughput of a running tidings server, measured with librdkafka
(confluent-kafka 2.16.1, the same venv as the client tests: tests/clients/.venv).

    tests/clients/.venv/bin/python benches/kafka/bench.py --broker 127.0.0.1:9092 --seconds 10

Phase 1 produces 200-byte records with acks=all (idempotent, no compression, linger 5 ms) to
a fresh topic of `--partitions` partitions for `--seconds` and reports acknowledged records/s.
Phase 2 reads every record of that topic back from the beginning with one consumer (assigned
partitions, no group) and reports records/s. Prints one JSON object.
"""

import argparse
import json
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

args = argparse.ArgumentParser()
args.add_argument("--broker", required=True)
args.add_argument("--seconds", type=float, default=10)
args.add_argument("--partitions", type=int, default=4)
args.add_argument("--size", type=int, default=200)
opts = args.parse_args()

topic = f"bench-{uuid.uuid4().hex[:8]}"
admin = AdminClient({"bootstrap.servers": opts.broker})
admin.create_topics([NewTopic(topic, opts.partitions, 1)])[topic].result(15)

producer = Producer({
    "bootstrap.servers": opts.broker,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 500000,
})
acked = 0


def delivered(err, _msg):
    global acked
    if err is None:
        acked += 1


payload = b"x" * opts.size
start = time.perf_counter()
deadline = start + opts.seconds
sent = 0
while time.perf_counter() < deadline:
    try:
        producer.produce(topic, value=payload, key=str(sent % 1000).encode(), on_delivery=delivered)
        sent += 1
    except BufferError:
        producer.poll(0.001)
    if sent % 1000 == 0:
        producer.poll(0)
producer.flush(60)
produce_seconds = time.perf_counter() - start

consumer = Consumer({
    "bootstrap.servers": opts.broker,
    "group.id": "bench-reader",
    "enable.auto.commit": False,
    "fetch.max.bytes": 52428800,
})
consumer.assign([TopicPartition(topic, p, 0) for p in range(opts.partitions)])
read = 0
start = time.perf_counter()
while read < acked:
    batch = consumer.consume(num_messages=10000, timeout=1.0)
    read += sum(1 for m in batch if m.error() is None)
    if time.perf_counter() - start > 120:
        break
consume_seconds = time.perf_counter() - start
consumer.close()

print(json.dumps({
    "records": acked,
    "produce_records_per_s": round(acked / produce_seconds),
    "read": read,
    "consume_records_per_s": round(read / consume_seconds),
}))
