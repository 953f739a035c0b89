// The SignalR chat scenarios of tests/integration/signalr_clients.rs, run with the real
// @microsoft/signalr client against a running tidings server.
//
//   node signalr_chat.mjs '{"scenario":"chat","base":"http://127.0.0.1:PORT","tokens":{...},"conversation":"c1"}'
//
// Each scenario prints JSON lines on stdout; the last one is its result. Anything unexpected
// throws, which exits non-zero: the Rust test then fails.
import * as signalR from "@microsoft/signalr";
import * as readline from "node:readline";

const config = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 15000;

function connection(user, { negotiate = true, reconnect = false } = {}) {
  const options = { accessTokenFactory: () => config.tokens[user] };
  if (!negotiate) {
    options.skipNegotiation = true;
    options.transport = signalR.HttpTransportType.WebSockets;
  }
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${config.base}${config.hub ?? "/chathub"}`, options)
    .configureLogging(signalR.LogLevel.None);
  if (reconnect) {
    builder = builder.withAutomaticReconnect([0, 200, 500, 1000, 1000, 1000, 2000, 2000, 2000, 2000]);
  }
  return builder.build();
}

// Resolves with the first argument of the first `method` call that satisfies `accept`.
function next(conn, method, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      conn.off(method, handler);
      reject(new Error(`no ${method} within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    function handler(arg) {
      if (!accept(arg)) return;
      clearTimeout(timer);
      conn.off(method, handler);
      resolve(arg);
    }
    conn.on(method, handler);
  });
}

// Collects every `method` argument from now on.
function collect(conn, method) {
  const seen = [];
  conn.on(method, (arg) => seen.push(arg));
  return seen;
}

async function failure(promise) {
  try {
    await promise;
  } catch (e) {
    return e.message;
  }
  throw new Error("expected the invocation to fail");
}

async function waitUntil(check, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const print = (value) => console.log(JSON.stringify(value));

// Join, send with a completion, receive (also on the sender's own connection), typing, read
// receipts, leave, a non-participant refused, hub errors for bad invocations.
async function chat() {
  const { conversation } = config;
  const alice = connection("alice");
  const bob = connection("bob", { negotiate: false });
  const carol = connection("carol");
  await Promise.all([alice.start(), bob.start(), carol.start()]);

  await alice.invoke("JoinConversation", conversation);
  await bob.invoke("JoinConversation", conversation);
  const carolJoin = await failure(carol.invoke("JoinConversation", conversation));

  const bobGets = next(bob, "ReceiveMessage", (m) => m.content === "hello");
  const aliceEcho = next(alice, "ReceiveMessage", (m) => m.content === "hello");
  const sent = await alice.invoke("SendMessage", conversation, "hello", "k-1");
  const received = await bobGets;
  const echoed = await aliceEcho;

  const typing = next(bob, "UserTyping");
  await alice.invoke("Typing", conversation, true);
  const typed = await typing;

  const receipt = next(alice, "MessageRead", (r) => r.userId === "bob");
  await bob.invoke("MarkRead", conversation, received.seq);
  const read = await receipt;

  // Edits, deletes and participant changes made over HTTP reach the joined connections.
  const api = (method, path, body) =>
    fetch(`${config.base}/api/conversations/${conversation}${path}`, {
      method,
      headers: { authorization: `Bearer ${config.tokens.alice}`, "content-type": "application/json" },
      body: body && JSON.stringify(body),
    }).then((r) => {
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status}`);
    });
  const updated = next(bob, "MessageUpdated", (m) => m.id === sent.id);
  await api("PATCH", `/messages/${sent.id}`, { content: "hello, edited" });
  const edited = await updated;
  const deletion = next(bob, "MessageDeleted", (d) => d.id === sent.id);
  await api("DELETE", `/messages/${sent.id}`);
  const deleted = await deletion;
  const membership = next(bob, "ConversationUpdated");
  await api("POST", "/participants", { userId: "dave" });
  const conversationUpdated = await membership;

  const unknownMethod = await failure(alice.invoke("Shout", conversation));
  const wrongArguments = await failure(alice.invoke("Typing", conversation));
  const wrongType = await failure(alice.invoke("MarkRead", conversation, "three"));
  const carolSend = await failure(carol.invoke("SendMessage", conversation, "let me in"));

  // Out of the group, bob hears nothing of it; back in, he does (in seq order, so a message
  // from his time out would have come before this one).
  const bobSeen = collect(bob, "ReceiveMessage");
  await bob.invoke("LeaveConversation", conversation);
  const broadcast = next(alice, "ReceiveMessage", (m) => m.content === "while bob is out");
  await alice.invoke("SendMessage", conversation, "while bob is out");
  await broadcast; // delivered to the group (alice) before bob joins again
  await bob.invoke("JoinConversation", conversation);
  await alice.invoke("SendMessage", conversation, "bob is back");
  await waitUntil(() => bobSeen.some((m) => m.content === "bob is back"), "bob is back");

  await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  print({
    sent,
    received,
    echoed,
    typed,
    read,
    edited,
    deleted,
    conversationUpdated,
    carolJoin,
    carolSend,
    unknownMethod,
    wrongArguments,
    wrongType,
    bobAfterRejoin: bobSeen.map((m) => m.content),
  });
}

// Joins, says {"ready":true}, then prints every message received until `count` arrived.
async function receive() {
  const conn = connection(config.user ?? "bob", { negotiate: config.negotiate ?? true });
  const seen = collect(conn, "ReceiveMessage");
  await conn.start();
  await conn.invoke("JoinConversation", config.conversation);
  print({ ready: true });
  await waitUntil(() => seen.length >= config.count, `${config.count} messages`);
  await conn.stop();
  print({ seqs: seen.map((m) => m.seq), ids: seen.map((m) => m.id), contents: seen.map((m) => m.content) });
}

// Resumes from a seq, then keeps receiving across a server restart with
// withAutomaticReconnect: on `reconnected` it resumes from the last seq it saw. Reads
// {"restarted":true} and {"expect":N} lines from stdin.
async function reconnect() {
  const conn = connection(config.user ?? "bob", { reconnect: true });
  const seen = collect(conn, "ReceiveMessage");
  const lastSeq = () => (seen.length ? seen[seen.length - 1].seq : 0);
  const events = [];
  conn.onreconnecting(() => events.push("reconnecting"));
  conn.onreconnected(async () => {
    events.push("reconnected");
    await conn.invoke("Resume", config.conversation, lastSeq());
  });
  await conn.start();
  await conn.invoke("Resume", config.conversation, 0);
  print({ ready: true });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const order = JSON.parse(line);
    if (order.expect !== undefined) {
      await waitUntil(() => seen.length >= order.expect, `${order.expect} messages`);
      print({ received: seen.length, events });
    }
    if (order.done) break;
  }
  await conn.stop();
  print({ seqs: seen.map((m) => m.seq), events });
}

const scenarios = { chat, receive, reconnect };
await scenarios[config.scenario]();
process.exit(0);
