// The admin view (a token with the `admin` scope): topics with their partitions' watermarks,
// consumer groups with members and lag per partition, a live tail of one partition (long-poll
// reads), the dead-letter topics, and rates computed from two scrapes of /metrics.

import { byId, el } from "./dom.js";

const REFRESH_MS = 2000;
const TAIL_WAIT_MS = 10000;
const TAIL_KEEP = 200;
const TAIL_BACKLOG = 20;

/** The rates shown: [label, metric, is a counter (shown per second) or a gauge]. */
const RATES = [
  ["appends/s (sends, edits, publishes)", "tidings_log_appends_total", true],
  ["deliveries/s", "tidings_ws_deliveries_total", true],
  ["fsyncs/s", "tidings_log_syncs_total", true],
  ["sessions", "tidings_ws_sessions", false],
];

export class Admin {
  constructor(api) {
    this.api = api;
    this.timer = null;
    this.previous = null;
    this.tail = null;
    this.topicNames = [];
    byId("tail-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.tail) this.stopTail();
      else this.startTail();
    });
  }

  start() {
    if (this.timer) return;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.stopTail();
  }

  async refresh() {
    try {
      await Promise.all([this.refreshTopics(), this.refreshGroups(), this.refreshRates()]);
      byId("admin-error").textContent = "";
    } catch (error) {
      byId("admin-error").textContent = error.message;
    }
  }

  async refreshTopics() {
    const { items } = await this.api.get("/api/topics");
    const rows = items.flatMap((topic) =>
      topic.partitions.map((p) =>
        el("tr", {}, el("th", { scope: "row", text: topic.name }), cell(p.partition), cell(p.low), cell(p.high))));
    byId("topics").tBodies[0].replaceChildren(...rows);
    this.showDeadLetters(items.filter((topic) => topic.name.endsWith(".dlq")));
    this.fillTopicChoice(items.map((topic) => topic.name));
  }

  showDeadLetters(topics) {
    const items = topics.map((topic) => {
      const count = topic.partitions.reduce((sum, p) => sum + (p.high - p.low), 0);
      const replay = el("button", {
        type: "button",
        text: "Replay",
        "aria-label": `Replay ${topic.name}`,
        onclick: () => this.replay(topic.name),
      });
      return el("li", {}, el("code", { text: topic.name }), ` ${count} retained `, replay);
    });
    byId("dead-letters").replaceChildren(...(items.length ? items : [el("li", { text: "No dead-letter topic" })]));
  }

  /** Replays a dead-letter topic's records not replayed yet, each to the sink that failed it. */
  async replay(topic) {
    const status = byId("replay-status");
    status.textContent = `Replaying ${topic}…`;
    try {
      const report = await this.api.post("/api/dlq/replay", { topic });
      status.textContent = `Replayed ${report.replayed} dead letters from ${report.topic}` +
        (report.otherSinks ? `, left ${report.otherSinks} of other sinks` : "") +
        (report.skipped ? `, skipped ${report.skipped} of other topics` : "");
    } catch (error) {
      status.textContent = `Replay failed: ${error.message}`;
    }
  }

  fillTopicChoice(names) {
    if (names.join("\n") === this.topicNames.join("\n")) return;
    this.topicNames = names;
    const select = byId("tail-topic");
    const chosen = select.value;
    select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
    if (names.includes(chosen)) select.value = chosen;
  }

  async refreshGroups() {
    const { items } = await this.api.get("/api/groups");
    const views = await Promise.all(items.map(({ group }) =>
      this.api.get(`/api/groups/${encodeURIComponent(group)}`).catch(() => null)));
    const rows = [];
    const members = [];
    for (const view of views.filter(Boolean)) {
      for (const topic of view.offsets) {
        for (const p of topic.partitions) {
          rows.push(el("tr", {}, el("th", { scope: "row", text: view.group }), cell(topic.topic), cell(p.partition),
            cell(p.committed ?? "none"), cell(p.high), cell(p.lag)));
        }
      }
      for (const member of view.members) {
        const assignment = member.assignment.map((a) => `${a.topic}/${a.partition}`).join(", ") || "no partitions";
        members.push(el("li", {}, el("code", { text: view.group }), ` member ${member.memberId}: ${assignment}`));
      }
    }
    byId("groups").tBodies[0].replaceChildren(...rows);
    byId("group-members").replaceChildren(...members);
  }

  async refreshRates() {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
    const now = { at: performance.now(), values: parseMetrics(await response.text()) };
    const before = this.previous;
    this.previous = now;
    const seconds = before ? (now.at - before.at) / 1000 : 0;
    const entries = RATES.flatMap(([label, name, counter]) => {
      const value = now.values.get(name);
      let shown = "–";
      if (value !== undefined && !counter) shown = String(value);
      else if (value !== undefined && before && seconds > 0) shown = ((value - (before.values.get(name) ?? value)) / seconds).toFixed(1);
      return [el("dt", { text: label }), el("dd", { text: shown })];
    });
    byId("rates").replaceChildren(...entries);
  }

  startTail() {
    const topic = byId("tail-topic").value;
    const partition = Number(byId("tail-partition").value || 0);
    if (!topic) return;
    const controller = new AbortController();
    this.tail = controller;
    byId("tail-toggle").textContent = "Stop tail";
    byId("tail").replaceChildren();
    this.follow(topic, partition, controller).catch((error) => {
      if (error.name !== "AbortError") byId("admin-error").textContent = `tail: ${error.message}`;
      if (this.tail === controller) this.stopTail();
    });
  }

  stopTail() {
    this.tail?.abort();
    this.tail = null;
    byId("tail-toggle").textContent = "Start tail";
  }

  /** Long-polls the partition from a few records before its end, as `tidings tail -f` does. */
  async follow(topic, partition, controller) {
    const path = `/api/topics/${encodeURIComponent(topic)}/partitions/${partition}/records`;
    const described = await this.api.get(`/api/topics/${encodeURIComponent(topic)}`, { signal: controller.signal });
    const watermarks = described.partitions.find((p) => p.partition === partition);
    if (!watermarks) throw new Error(`${topic} has no partition ${partition}`);
    let offset = Math.max(watermarks.low, watermarks.high - TAIL_BACKLOG);
    while (!controller.signal.aborted) {
      const answer = await this.api.get(`${path}?offset=${offset}&limit=100&waitMs=${TAIL_WAIT_MS}`, { signal: controller.signal });
      for (const record of answer.records) this.showRecord(record);
      offset = answer.nextOffset;
    }
  }

  showRecord(record) {
    const list = byId("tail");
    const value = record.value !== undefined ? JSON.stringify(record.value) : `base64:${record.valueBase64}`;
    list.append(el("li", {}, el("code", { text: `#${record.offset}` }), ` ${record.key ?? ""} `, el("span", { class: "value", text: value })));
    while (list.children.length > TAIL_KEEP) list.firstElementChild.remove();
  }
}

function cell(value) {
  return el("td", { text: String(value) });
}

/** Unlabelled samples of a Prometheus text scrape, by name. */
function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const [name, value] = line.split(" ");
    if (name.includes("{")) continue;
    values.set(name, Number(value));
  }
  return values;
}
