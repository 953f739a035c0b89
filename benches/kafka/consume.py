"""Reads a whole topic from the beginning with librdkafka's batch API and prints records/s.

    tests/clients/.venv/bin/python benches/kafka/consume.py --broker 127.0.0.1:9092 --topic T

One consumer (confluent-kafka 2.16.1), partitions assigned without a group, `consume()` in
batches of 10,000 so that Python is called once per batch, not per record; the fetch settings
are librdkafka's large-read ones (`fetch.max.bytes`, `max.partition.fetch.bytes`,
`queued.max.messages.kbytes`). Stops at the high watermarks read before it starts. Prints one
JSON object: records, seconds, recordsPerSec.
"""

import argparse
import json
import time

from confluent_kafka import Consumer, TopicPartition

args = argparse.ArgumentParser()
args.add_argument("--broker", required=True)
args.add_argument("--topic", required=True)
opts = args.parse_args()

consumer = Consumer({
    "bootstrap.servers": opts.broker,
    "group.id": "unused",
    "enable.auto.commit": False,
    "fetch.max.bytes": 52428800,
    "max.partition.fetch.bytes": 10485760,
    "queued.max.messages.kbytes": 1048576,
    "fetch.wait.max.ms": 100,
})
metadata = consumer.list_topics(opts.topic, timeout=10)
partitions = sorted(metadata.topics[opts.topic].partitions)
ends = {p: consumer.get_watermark_offsets(TopicPartition(opts.topic, p), timeout=10)[1] for p in partitions}
total = sum(ends.values())
consumer.assign([TopicPartition(opts.topic, p, 0) for p in partitions])
read = 0
start = time.perf_counter()
while read < total:
    batch = consumer.consume(num_messages=10000, timeout=1.0)
    read += sum(1 for m in batch if m.error() is None)
seconds = time.perf_counter() - start
consumer.close()
print(json.dumps({"records": read, "seconds": round(seconds, 3), "recordsPerSec": round(read / seconds)}))
