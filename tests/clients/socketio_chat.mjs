// The Socket.IO chat scenarios of tests/integration/socketio_clients.rs, run with the real
// socket.io-client against a running tidings server.
//
//   node socketio_chat.mjs '{"scenario":"chat","base":"http://127.0.0.1:PORT","tokens":{...},
//                           "conversation":"c1","transport":"websocket"}'
//
// `transport` is "websocket" (`transports: ["websocket"]`, no polling at all), "default"
// (socket.io-client's default: long-polling first, then the upgrade to a WebSocket) or
// "polling" (`transports: ["polling"]`, never upgraded: with the default, the upgrade is done
// within milliseconds, before most events flow, so this is what exercises long-polling). Each
// scenario prints JSON lines on stdout; the last one is its result. Anything unexpected throws
// (a socket that drops included), which exits non-zero: the Rust test then fails.
import { io } from "socket.io-client";
import * as readline from "node:readline";

const config = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 15000;

function transports() {
  switch (config.transport) {
    case "websocket":
      return ["websocket"];
    case "default":
      return undefined; // the client's own default: ["polling", "websocket"]
    case "polling":
      return ["polling"];
    default:
      throw new Error(`unknown transport ${JSON.stringify(config.transport)}`);
  }
}

// A socket for `user`, not yet connected; its token in `auth` (or in the query with
// `tokenIn: "query"`, as `?token=`; none with `tokenIn: "none"`). Reconnection is off, so that a dropped connection
// surfaces as a failure instead of being papered over.
function socketFor(user, { tokenIn = "auth", token = config.tokens[user] } = {}) {
  const options = { forceNew: true, reconnection: false, autoConnect: false };
  const chosen = transports();
  if (chosen) options.transports = chosen;
  if (tokenIn === "auth") options.auth = { token };
  else if (tokenIn === "query") options.query = { token };
  const socket = io(config.base, options);
  socket.on("disconnect", (reason) => {
    if (reason !== "io client disconnect") {
      throw new Error(`${user}'s socket dropped: ${reason}`);
    }
  });
  return socket;
}

// Connects `socket`; resolves with the transport its connection opened on. (Read when the
// Engine.IO connection opens: by the `connect` event the default's upgrade may be done already,
// as the client dispatches the CONNECT answer a tick after reading it.)
function connect(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    let opened;
    socket.io.once("open", () => {
      opened = socket.io.engine.transport.name;
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(opened);
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data)}`));
    });
    socket.connect();
  });
}

async function connected(user, options) {
  const socket = socketFor(user, options);
  const transport = await connect(socket);
  return { socket, transport };
}

// The connect_error a socket gets instead of connecting: {message, data}.
function refusal(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect_error within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      reject(new Error("the socket connected"));
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      resolve({ message: err.message, data: err.data ?? null });
    });
    socket.connect();
  });
}

// Resolves with the data of the first `event` that satisfies `accept`.
function next(socket, event, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no ${event} within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    function handler(data) {
      if (!accept(data)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(data);
    }
    socket.on(event, handler);
  });
}

// Collects the data of every `event` from now on.
function collect(socket, event) {
  const seen = [];
  socket.on(event, (data) => seen.push(data));
  return seen;
}

// Emits `event` with `data` and resolves with the acknowledgement's argument. `onAck` runs in
// the acknowledgement callback itself, before any packet that came after it is handled.
function ask(socket, event, data, onAck = () => {}) {
  return new Promise((resolve, reject) => {
    socket.timeout(TIMEOUT_MS).emit(event, data, (err, answer) => {
      if (err) return reject(new Error(`no acknowledgement of ${event} within ${TIMEOUT_MS} ms`));
      onAck(answer);
      resolve(answer);
    });
  });
}

async function waitUntil(check, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The transport a socket ends on: with the default transports, once the upgrade is done.
async function settledTransport(socket) {
  if (config.transport === "default") {
    await waitUntil(() => socket.io.engine.transport.name === "websocket", "the upgrade to websocket");
  }
  return socket.io.engine.transport.name;
}

// `method path` on the conversation's HTTP API as `user`.
async function api(user, method, path, body) {
  const response = await fetch(`${config.base}/api/conversations/${config.conversation}${path}`, {
    method,
    headers: { authorization: `Bearer ${config.tokens[user]}`, "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
}

const print = (value) => console.log(JSON.stringify(value));

// Send with an acknowledgement, receive (also on the sender's own socket), typing, read
// receipts, edits, deletes and a participant added over HTTP, bad events refused.
async function chat() {
  const { conversation } = config;
  const [alice, bob] = await Promise.all([connected("alice"), connected("bob")]);

  const bobGets = next(bob.socket, "message", (d) => d.message?.content === "hello");
  const aliceEcho = next(alice.socket, "message", (d) => d.message?.content === "hello");
  const sent = await ask(alice.socket, "send", { conversationId: conversation, content: "hello", clientMessageId: "k-1" });
  const received = await bobGets;
  const echoed = await aliceEcho;

  const typing = next(bob.socket, "typing");
  const typingAck = await ask(alice.socket, "typing", { conversationId: conversation, typing: true });
  const typed = await typing;

  const receipt = next(alice.socket, "read", (r) => r.userId === "bob");
  const readAck = await ask(bob.socket, "read", { conversationId: conversation, seq: received.message.seq });
  const read = await receipt;

  const updated = next(bob.socket, "message.updated", (d) => d.message?.id === sent.id);
  await api("alice", "PATCH", `/messages/${sent.id}`, { content: "hello, edited" });
  const edited = await updated;
  const deletion = next(bob.socket, "message.deleted", (d) => d.id === sent.id);
  await api("alice", "DELETE", `/messages/${sent.id}`);
  const deleted = await deletion;
  const membership = next(bob.socket, "conversation.updated");
  await api("alice", "POST", "/participants", { userId: "dave" });
  const conversationUpdated = await membership;

  const unknownEvent = await ask(alice.socket, "shout", { conversationId: conversation });
  const wrongArgument = await ask(alice.socket, "typing", conversation);
  const wrongType = await ask(alice.socket, "read", { conversationId: conversation, seq: "three" });

  const transportsAtEnd = await Promise.all([settledTransport(alice.socket), settledTransport(bob.socket)]);
  alice.socket.disconnect();
  bob.socket.disconnect();
  print({
    sent,
    received,
    echoed,
    typingAck,
    typed,
    readAck,
    read,
    edited,
    deleted,
    conversationUpdated,
    unknownEvent,
    wrongArgument,
    wrongType,
    transportsAtConnect: [alice.transport, bob.transport],
    transportsAtEnd,
  });
}

// Bob resumes from seq 0 (the conversation already holds `config.count` messages): the stored
// messages come first, in order, then the acknowledgement; a message sent afterwards comes live.
async function resume() {
  const { conversation } = config;
  const bob = await connected("bob");
  const order = [];
  bob.socket.on("message", (d) => order.push(d.message.seq));
  const ack = await ask(bob.socket, "resume", { conversations: { [conversation]: 0 } }, () => order.push("ack"));
  await api("alice", "POST", "/messages", { content: "live" });
  await waitUntil(() => order.includes(config.count + 1), "the live message");
  const transport = await settledTransport(bob.socket);
  bob.socket.disconnect();
  print({ ack, order, transport });
}

// Carol, not a participant of the conversation, is refused with 404 for each event (a resume
// included) and never hears its messages; her token is in the query (`?token=`). A message in a conversation she is
// in, sent once alice has heard hers, marks the point by which any leak would have arrived.
async function outsider() {
  const { conversation } = config;
  const alice = await connected("alice");
  const carol = await connected("carol", { tokenIn: "query" });
  const carolSaw = collect(carol.socket, "message");
  const refusals = {
    send: await ask(carol.socket, "send", { conversationId: conversation, content: "let me in" }),
    typing: await ask(carol.socket, "typing", { conversationId: conversation, typing: true }),
    read: await ask(carol.socket, "read", { conversationId: conversation, seq: 1 }),
    resume: await ask(carol.socket, "resume", { conversations: { [conversation]: 0 } }),
  };
  const aliceHears = next(alice.socket, "message", (d) => d.message?.content === "not for carol");
  await ask(alice.socket, "send", { conversationId: conversation, content: "not for carol" });
  await aliceHears;
  const carolHears = next(carol.socket, "message", (d) => d.message?.content === "for carol");
  await ask(alice.socket, "send", { conversationId: config.carolConversation, content: "for carol" });
  await carolHears;
  alice.socket.disconnect();
  carol.socket.disconnect();
  print({ refusals, carolSaw: carolSaw.map((d) => d.message.content) });
}

// Bad tokens: `auth: {token: "nope"}` and no token at all each get a connect_error; the script
// then waits for {"connect":true} on stdin, connects alice properly and waits for {"done":true}.
async function refused() {
  const nope = socketFor("nobody", { token: "nope" });
  const badToken = await refusal(nope);
  const anonymous = socketFor("nobody", { tokenIn: "none" });
  const noToken = await refusal(anonymous);
  print({ badToken, noToken, connected: nope.connected || anonymous.connected, active: nope.active || anonymous.active });
  const lines = readline.createInterface({ input: process.stdin });
  let alice;
  for await (const line of lines) {
    const order = JSON.parse(line);
    if (order.connect) {
      alice = await connected("alice");
      print({ connected: true });
    }
    if (order.done) break;
  }
  alice?.socket.disconnect();
  print({ done: true });
}

// Says {"ready":true} once connected, then prints every message received until `count` arrived.
async function receive() {
  const socket = socketFor(config.user ?? "bob");
  const seen = collect(socket, "message");
  await connect(socket);
  print({ ready: true });
  await waitUntil(() => seen.length >= config.count, `${config.count} messages`);
  const transport = await settledTransport(socket);
  socket.disconnect();
  const messages = seen.map((d) => d.message);
  print({
    seqs: messages.map((m) => m.seq),
    ids: messages.map((m) => m.id),
    contents: messages.map((m) => m.content),
    transport,
  });
}

// Alice listens for bob's presence while the Rust side opens and closes bob's sessions on /ws;
// bob's Socket.IO socket is opened and closed here on orders from stdin, one JSON line each:
// {"connect":"bob"}, {"disconnect":"bob"}, {"presence":"online"|"offline"} (wait for bob's),
// {"message":CONTENT} (wait until alice received it), {"done":true}. Each order is answered
// with a line holding every presence event alice heard so far.
async function presence() {
  const alice = await connected("alice");
  const heard = collect(alice.socket, "presence");
  const seen = collect(alice.socket, "message");
  print({ ready: true });
  let bob;
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const order = JSON.parse(line);
    if (order.connect) bob = await connected(order.connect);
    if (order.disconnect) bob.socket.disconnect();
    if (order.presence) {
      const wanted = (p) => p.userId === "bob" && p.status === order.presence;
      await waitUntil(() => heard.some(wanted), `bob ${order.presence}`);
    }
    if (order.message) {
      await waitUntil(() => seen.some((d) => d.message.content === order.message), order.message);
    }
    if (order.done) break;
    print({ presence: heard });
  }
  alice.socket.disconnect();
  print({ presence: heard });
}

const scenarios = { chat, resume, outsider, refused, receive, presence };
await scenarios[config.scenario]();
process.exit(0);
