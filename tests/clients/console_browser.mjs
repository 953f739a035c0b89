// Drives the web console (GET /) in Debian's chromium through playwright-core, as a person
// would: by the accessible names of docs/console.md (textbox "Message", button "Send", lists
// "Messages" and "Conversations"). One scenario per run, named in the JSON argument:
//   chat    two users in two browser contexts: new conversation, send, receive live, typing,
//           read receipt, edit, delete; then a reload restores the open conversation.
//   offline a context goes offline while messages are sent, comes back: every message once, in
//           order.
//   paging  a long conversation opens on its newest page and pages back on scroll.
//   admin   an admin token sees a topic's offsets move, a group's lag fall to 0, a live tail.
// Every wait is bounded; a failed expectation throws, the script prints {"error"} and exits 1.
// The last line on stdout is the scenario's JSON result, checked again by
// tests/integration/console_browser.rs.

import { chromium } from "playwright-core";
import { existsSync } from "node:fs";

const config = JSON.parse(process.argv[2]);
const WAIT_MS = 20000;

function executable() {
  for (const path of [config.chromium, "/usr/lib/chromium/chromium", "/usr/bin/chromium"]) {
    if (path && existsSync(path)) return path;
  }
  throw new Error("no chromium: apt-get install chromium");
}

async function until(what, check, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function api(token, method, path, body) {
  const response = await fetch(config.base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The texts of the Messages list, one per listitem. */
const messageTexts = (page) =>
  page.getByRole("list", { name: "Messages" }).getByRole("listitem").locator(".text").allTextContents();

async function signIn(browser, token, viewport = { width: 1100, height: 700 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  await page.goto(`${config.base}/#token=${token}`);
  await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: WAIT_MS });
  return { context, page };
}

async function openConversation(page, title) {
  const entry = page.getByRole("list", { name: "Conversations" }).getByRole("button", { name: title });
  await entry.waitFor({ timeout: WAIT_MS });
  await entry.click();
  await until(`conversation ${title} open`, async () => (await page.locator("#conversation-title").textContent()) === title);
}

async function send(page, text) {
  await page.getByRole("textbox", { name: "Message" }).fill(text);
  await page.getByRole("button", { name: "Send", exact: true }).click();
}

async function seesMessage(page, text) {
  await page.getByRole("list", { name: "Messages" }).getByRole("listitem").filter({ hasText: text }).first().waitFor({ timeout: WAIT_MS });
}

async function chat(browser) {
  const result = {};
  const alice = await signIn(browser, config.tokens.alice);
  const bob = await signIn(browser, config.tokens.bob);
  result.fragmentRemoved = !(await alice.page.evaluate(() => location.href)).includes("token");

  // Alice starts a conversation with bob from the form and writes first.
  await alice.page.getByRole("button", { name: "New", exact: true }).click();
  await alice.page.getByRole("textbox", { name: "Title" }).fill("Team");
  await alice.page.getByRole("textbox", { name: "Participants" }).fill("bob");
  await alice.page.getByRole("button", { name: "Create" }).click();
  await until("alice's Team open", async () => (await alice.page.locator("#conversation-title").textContent()) === "Team");
  await send(alice.page, "hello bob <b>not bold</b>");
  await seesMessage(alice.page, "hello bob");

  // Bob's list learns the conversation live, with one unread message.
  const bobEntry = bob.page.getByRole("list", { name: "Conversations" }).getByRole("button", { name: "Team" });
  await bobEntry.waitFor({ timeout: WAIT_MS });
  result.bobEntry = await until("bob's unread count", async () => {
    const text = await bobEntry.textContent();
    return text.includes("1 unread") ? text : null;
  });
  await openConversation(bob.page, "Team");
  await seesMessage(bob.page, "hello bob");
  result.renderedAsText = await bob.page.getByRole("list", { name: "Messages" }).locator("b").count() === 0;

  // Read receipt: bob opened it, so alice sees "Seen by bob".
  await alice.page.getByText("Seen by bob").waitFor({ timeout: WAIT_MS });
  result.seenBy = await alice.page.locator(".seen").filter({ hasText: "Seen by" }).first().textContent();

  // Typing: bob types, alice sees it; bob sends, alice receives it live.
  await bob.page.getByRole("textbox", { name: "Message" }).pressSequentially("hi al", { delay: 20 });
  await alice.page.getByText("bob is typing…").waitFor({ timeout: WAIT_MS });
  result.typing = await alice.page.locator("#typing").textContent();
  await bob.page.getByRole("textbox", { name: "Message" }).fill("hi alice");
  await bob.page.getByRole("textbox", { name: "Message" }).press("Enter");
  await seesMessage(alice.page, "hi alice");
  await until("typing cleared", async () => (await alice.page.locator("#typing").textContent()) === "");

  // Edit: alice fixes her message; bob sees the new text.
  const hello = alice.page.getByRole("list", { name: "Messages" }).getByRole("listitem").filter({ hasText: "hello bob" });
  await hello.getByRole("button", { name: "Edit" }).click();
  await alice.page.getByRole("textbox", { name: "Edit text" }).fill("hello bob, edited");
  await alice.page.getByRole("button", { name: "Save" }).click();
  await seesMessage(bob.page, "hello bob, edited");
  result.editedMarked = await bob.page.getByRole("list", { name: "Messages" }).getByRole("listitem").filter({ hasText: "hello bob, edited" }).getByText("(edited)").count();

  // Delete: alice sends a mistake and deletes it; bob sees it go.
  await send(alice.page, "oops, wrong room");
  await seesMessage(bob.page, "oops, wrong room");
  await alice.page.getByRole("list", { name: "Messages" }).getByRole("listitem").filter({ hasText: "oops, wrong room" }).getByRole("button", { name: "Delete" }).click();
  await until("the deleted message gone at bob's", async () =>
    (await bob.page.getByRole("list", { name: "Messages" }).getByRole("listitem").filter({ hasText: "oops, wrong room" }).count()) === 0);
  await seesMessage(bob.page, "This message was deleted");
  await send(bob.page, "see you at 3");
  await seesMessage(alice.page, "see you at 3");
  result.bobMessages = await messageTexts(bob.page);
  result.aliceMessages = await messageTexts(alice.page);

  // A reload restores the open conversation and its history.
  await bob.page.reload();
  await until("the conversation after reload", async () => (await bob.page.locator("#conversation-title").textContent()) === "Team");
  await seesMessage(bob.page, "see you at 3");
  result.afterReload = await messageTexts(bob.page);
  if (config.screenshots) {
    await alice.page.waitForTimeout(300);
    await alice.page.screenshot({ path: `${config.screenshots}/console-chat.png` });
    const phone = await signIn(browser, config.tokens.bob, { width: 390, height: 760 });
    await openConversation(phone.page, "Team");
    await seesMessage(phone.page, "see you at 3");
    await phone.page.screenshot({ path: `${config.screenshots}/console-phone.png` });
  }
  return result;
}

async function offline(browser) {
  const { conversation, tokens } = config;
  const bob = await signIn(browser, tokens.bob);
  await openConversation(bob.page, "Offline test");
  for (const n of [1, 2, 3]) await api(tokens.alice, "POST", `/api/conversations/${conversation}/messages`, { content: `m${n}` });
  await until("m1..m3 live", async () => (await messageTexts(bob.page)).length === 3);

  await bob.context.setOffline(true);
  await until("offline shown", async () => (await bob.page.getByRole("status").textContent()) === "offline");
  for (const n of [4, 5, 6, 7, 8]) await api(tokens.alice, "POST", `/api/conversations/${conversation}/messages`, { content: `m${n}` });
  const whileOffline = await messageTexts(bob.page);
  await bob.context.setOffline(false);
  await until("online again", async () => (await bob.page.getByRole("status").textContent()) === "online");
  await until("m4..m8 after the resume", async () => (await messageTexts(bob.page)).length >= 8);
  await api(tokens.alice, "POST", `/api/conversations/${conversation}/messages`, { content: "m9" });
  await seesMessage(bob.page, "m9");
  return { whileOffline, messages: await messageTexts(bob.page) };
}

/** A long conversation opens on its newest page; scrolling up pages back to the first message. */
async function paging(browser) {
  const { conversation, tokens } = config;
  const bob = await signIn(browser, tokens.bob);
  await openConversation(bob.page, "Offline test");
  await until("the newest message", async () => (await messageTexts(bob.page)).at(-1) === `m${config.count}`);
  const firstPage = (await messageTexts(bob.page)).length;
  const list = bob.page.getByRole("list", { name: "Messages" });
  await until("every page loaded by scrolling up", async () => {
    await list.evaluate((ul) => { ul.scrollTop = 0; ul.dispatchEvent(new Event("scroll")); });
    return (await messageTexts(bob.page)).length === config.count;
  });
  return { firstPage, messages: await messageTexts(bob.page) };
}

/** The rows of the admin table named `name`, each as its cells' texts. */
const rows = (page, name) =>
  page.getByRole("table", { name }).locator("tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));

async function admin(browser) {
  const { ops } = config.tokens;
  const result = {};
  const { page } = await signIn(browser, ops, { width: 1100, height: 1300 });
  await page.getByRole("button", { name: "Admin" }).click();
  await api(ops, "POST", "/api/topics", { name: "orders", partitions: 2 });
  const publish = (values) => api(ops, "POST", "/api/topics/orders/partitions/0/records", { records: values.map((value) => ({ value })) });
  await publish([{ n: 1 }, { n: 2 }, { n: 3 }]);
  const high = (n) => async () => (await rows(page, "Topics")).find((r) => r[0] === "orders" && r[1] === "0" && r[3] === String(n));
  result.topicBefore = await until("orders/0 at 3", high(3));
  await publish([{ n: 4 }, { n: 5 }]);
  result.topicAfter = await until("orders/0 moved to 5", high(5));

  // A group that has read part of the partition shows lag, then 0 once it committed the rest.
  const { memberId } = await api(ops, "POST", "/api/groups/billing/members", { topics: ["orders"] });
  await api(ops, "POST", `/api/groups/billing/members/${memberId}/poll`, { limit: 100, waitMs: 0 });
  const commit = (offset) => api(ops, "POST", "/api/groups/billing/offsets", { memberId, offsets: [{ topic: "orders", partition: 0, offset }] });
  await commit(2);
  const lag = (n) => async () => (await rows(page, "Consumer groups")).find((r) => r[0] === "billing" && r[2] === "0" && r[5] === String(n));
  result.lagBefore = await until("billing lag 3", lag(3));
  await commit(5);
  result.lagAfter = await until("billing lag 0", lag(0));

  // The live tail shows a record published after it started.
  await page.getByRole("combobox", { name: "Topic" }).selectOption("orders");
  await page.getByRole("button", { name: "Start tail" }).click();
  await page.getByRole("list", { name: "Tail" }).getByRole("listitem").filter({ hasText: '{"n":5}' }).waitFor({ timeout: WAIT_MS });
  await publish([{ n: 6, live: true }]);
  await page.getByRole("list", { name: "Tail" }).getByRole("listitem").filter({ hasText: '"live":true' }).waitFor({ timeout: WAIT_MS });
  result.tail = await page.getByRole("list", { name: "Tail" }).getByRole("listitem").allTextContents();
  result.rates = await until("rates", async () => {
    const text = await page.locator("#rates").textContent();
    return text.includes("fsyncs/s") && !text.includes("–") ? text : null;
  });
  if (config.screenshots) await page.screenshot({ path: `${config.screenshots}/console-admin.png` });
  return result;
}

const scenarios = { chat, offline, paging, admin };
const browser = await chromium.launch({ executablePath: executable(), headless: true });
try {
  const result = await scenarios[config.scenario](browser);
  console.log(JSON.stringify(result));
} catch (error) {
  console.log(JSON.stringify({ error: error.message }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
