// Drives kafkajs 2.2.4 through every API the golden files cover.
//   node kafka_golden_capture.mjs BROKER TOKEN   (tests/fixtures/kafka/recapture.sh runs it)
import { Kafka, logLevel } from "kafkajs";

const [broker, token] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "golden", brokers: [broker], logLevel: logLevel.NOTHING });
// The admin client authenticates (SASL/PLAIN, an `admin` token): deleting a topic needs it.
const sasl = new Kafka({
  clientId: "golden-admin", brokers: [broker], logLevel: logLevel.NOTHING,
  sasl: { mechanism: "plain", username: "svc", password: token },
});
const admin = sasl.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic: "golden", numPartitions: 2 }] });
await admin.describeConfigs({ resources: [{ type: 2, name: "golden" }], includeSynonyms: false });

const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
await producer.send({ topic: "golden", acks: -1, messages: [1, 2, 3].map((n) => ({ key: `k${n}`, value: `{"n":${n}}` })) });
await producer.disconnect();

const consumer = kafka.consumer({ groupId: "golden-group", sessionTimeout: 6000, heartbeatInterval: 300 });
await consumer.connect();
await consumer.subscribe({ topic: "golden", fromBeginning: true });
let got = 0;
await new Promise((resolve) => {
  consumer.run({ eachMessage: async () => { got += 1; if (got === 3) setTimeout(resolve, 1500); } });
});
await consumer.disconnect();

await admin.fetchTopicOffsetsByTimestamp("golden", Date.now() - 60000);
await admin.fetchOffsets({ groupId: "golden-group", topics: ["golden"] });
await admin.listGroups();
await admin.describeGroups(["golden-group"]);
await admin.deleteTopics({ topics: ["golden"] });
await admin.disconnect();

console.log("kafkajs: done, consumed", got);
