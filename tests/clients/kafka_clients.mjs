// The Kafka scenarios of tests/integration/kafka_clients.rs, run with the real kafkajs 2.2.4
// client against a running tidings server's Kafka listener.
//
//   node kafka_clients.mjs '{"scenario":"produce","broker":"127.0.0.1:PORT","topic":"t","records":[{"key":"k","value":"{...}"}]}'
//
// Scenarios:
//   produce  — one producer sends `records` (acks = all) and prints {"offsets":[{partition, offset}]}.
//   consume  — a consumer in `group` subscribes to `topic` (fromBeginning), reads `count` records,
//              commits, leaves, and prints {"records":[{partition, offset, key, value}]}.
//   split    — two consumers in `group` on `topic`; once both own partitions, prints
//              {"assigned":[[partitions of a],[partitions of b]]}, then a leaves and the test
//              prints {"after":[partitions of b]} once b owns every partition.
//   member   — one consumer in `group` on `topic` (session timeout 6 s) that prints
//              {"owned":[partitions]} after every rebalance, until the test kills it.
//   reader   — one consumer in `group` on `topic` that prints {"owned":[partitions]} after every
//              rebalance and {"got":[partition, offset]} for every record (kafkajs commits after
//              each batch; fetches wait at most 1 s) and {"crashed": why} when kafkajs restarts
//              it; on the line "stop" from the test it disconnects and prints {"stopped":true}.
//              `debug`: kafkajs's log on stderr.
// `brokers` (a list) may stand for `broker`: the bootstrap addresses.
// Anything unexpected throws, which exits non-zero: the Rust test then fails.
import { createInterface } from "node:readline";
import { Kafka, logLevel } from "kafkajs";

const config = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 45000;

const kafka = new Kafka({
  clientId: "tidings-test",
  brokers: config.brokers ?? [config.broker],
  logLevel: config.debug ? logLevel.INFO : logLevel.NOTHING,
  logCreator: () => ({ namespace, level, label, log }) =>
    process.stderr.write(`${new Date().toISOString()} ${label} ${namespace} ${log.message} ${JSON.stringify(log)}\n`),
  retry: { retries: 5 },
});

function print(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

function deadline(what) {
  return new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`timed out: ${what}`)), TIMEOUT_MS).unref(),
  );
}

async function produce() {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const sent = await producer.send({
    topic: config.topic,
    acks: -1,
    messages: config.records.map((r) => ({ key: r.key, value: r.value, headers: r.headers })),
  });
  await producer.disconnect();
  print({ offsets: sent.map((s) => ({ partition: s.partition, offset: Number(s.baseOffset) })) });
}

async function consume() {
  const consumer = kafka.consumer({ groupId: config.group, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic: config.topic, fromBeginning: true });
  const records = [];
  const done = new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        records.push({
          partition,
          offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
        });
        if (records.length >= config.count) resolve();
      },
    });
  });
  await Promise.race([done, deadline(`${config.count} records from ${config.topic}`)]);
  await consumer.commitOffsets([]).catch(() => {});
  await consumer.disconnect();
  print({ records });
}

// Resolves with the partitions `consumer` owns once `accept(partitions)` holds.
function assignment(consumer, accept) {
  return new Promise((resolve) => {
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      const owned = (event.payload.memberAssignment[config.topic] ?? []).slice().sort((x, y) => x - y);
      if (accept(owned)) resolve(owned);
    });
  });
}

async function split() {
  const member = () => kafka.consumer({ groupId: config.group, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 300 });
  const a = member();
  const b = member();
  const aOwns = assignment(a, (owned) => owned.length > 0 && owned.length < config.partitions);
  const bOwns = assignment(b, (owned) => owned.length > 0 && owned.length < config.partitions);
  for (const c of [a, b]) {
    await c.connect();
    await c.subscribe({ topic: config.topic, fromBeginning: true });
    await c.run({ eachMessage: async () => {} });
  }
  const assigned = await Promise.race([Promise.all([aOwns, bOwns]), deadline("both members own partitions")]);
  print({ assigned });
  const bOwnsAll = assignment(b, (owned) => owned.length === config.partitions);
  await a.disconnect();
  const after = await Promise.race([bOwnsAll, deadline("b owns every partition")]);
  print({ after });
  await b.disconnect();
}

async function member() {
  const consumer = kafka.consumer({ groupId: config.group, sessionTimeout: 6000, rebalanceTimeout: 6000, heartbeatInterval: 300 });
  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    const owned = (event.payload.memberAssignment[config.topic] ?? []).slice().sort((x, y) => x - y);
    print({ owned });
  });
  await consumer.connect();
  await consumer.subscribe({ topic: config.topic, fromBeginning: true });
  await consumer.run({ eachMessage: async () => {} });
  await new Promise(() => {});
}

async function reader() {
  // A fetch waits at most 1 s: kafkajs retries a dead broker once per fetch round until it
  // gives up and restarts the consumer, so this bounds how long a killed node holds it up.
  const consumer = kafka.consumer({ groupId: config.group, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 1000 });
  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    const owned = (event.payload.memberAssignment[config.topic] ?? []).slice().sort((x, y) => x - y);
    print({ owned });
  });
  // kafkajs restarts a consumer that crashed on a retriable error (a dead broker): said, so
  // that the test sees the reader is alive while it recovers.
  consumer.on(consumer.events.CRASH, (event) => print({ crashed: event.payload.error.message }));
  await consumer.connect();
  await consumer.subscribe({ topic: config.topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => print({ got: [partition, Number(message.offset)] }),
  });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === '"stop"' || line.trim() === "stop") break;
  }
  await consumer.disconnect();
  print({ stopped: true });
}

const scenarios = { produce, consume, split, member, reader };
await scenarios[config.scenario]();
process.exit(0);
