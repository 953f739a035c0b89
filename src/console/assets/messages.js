// The open conversation's message list: one <li> per message in seq order, whatever order the
// messages arrive in (history pages, live frames, a resume after a reconnect), each seq once.
// Own messages get Edit and Delete; the newest own message each reader has reached says
// "Seen by …".

import { el, shortTime } from "./dom.js";

export class MessageList {
  /**
   * @param {HTMLUListElement} list the `Messages` list
   * @param {string} me the signed-in user id
   * @param {{edit: (m: object, content: string) => Promise<void>, remove: (m: object) => Promise<void>, name: (id: string) => string}} actions
   */
  constructor(list, me, actions) {
    this.list = list;
    this.me = me;
    this.actions = actions;
    this.messages = new Map();
    this.items = new Map();
    this.readers = new Map();
    this.editing = null;
    list.replaceChildren();
  }

  get oldestSeq() {
    let oldest = Infinity;
    for (const seq of this.messages.keys()) oldest = Math.min(oldest, seq);
    return oldest === Infinity ? null : oldest;
  }

  get newestSeq() {
    let newest = 0;
    for (const seq of this.messages.keys()) newest = Math.max(newest, seq);
    return newest;
  }

  /** Adds or replaces a message (an edit or delete replaces it in place). */
  put(message) {
    const known = this.messages.get(message.seq);
    if (known && known.id !== message.id) return;
    this.messages.set(message.seq, message);
    const item = this.render(message);
    const old = this.items.get(message.seq);
    if (old) {
      if (this.editing === message.seq) return; // keep the open editor; it is redrawn on save
      old.replaceWith(item);
    } else {
      this.list.insertBefore(item, this.nextItemAfter(message.seq));
    }
    this.items.set(message.seq, item);
    this.showSeen();
  }

  /** A `message.deleted` frame: the message keeps its place, loses its text. */
  markDeleted(id, seq) {
    const message = this.messages.get(seq);
    if (!message || message.id !== id) return;
    this.editing = this.editing === seq ? null : this.editing;
    this.put({ ...message, content: "", deleted: true });
  }

  /** A reader's read mark moved to `seq`. */
  setReader(userId, seq) {
    if (userId === this.me) return;
    this.readers.set(userId, Math.max(this.readers.get(userId) || 0, seq));
    this.showSeen();
  }

  nextItemAfter(seq) {
    let next = null;
    let nextSeq = Infinity;
    for (const [other, item] of this.items) {
      if (other > seq && other < nextSeq) {
        next = item;
        nextSeq = other;
      }
    }
    return next;
  }

  render(message) {
    const mine = message.senderId === this.me;
    const sender = mine ? "You" : message.senderName || message.senderId;
    const meta = el(
      "div",
      { class: "meta" },
      el("span", { class: "sender", text: sender }),
      " ",
      el("time", { datetime: message.sentAt, text: shortTime(message.sentAt) }),
      message.editedAt && !message.deleted ? el("span", { class: "edited", text: " (edited)" }) : null,
    );
    const text = message.deleted
      ? el("p", { class: "text deleted", text: "This message was deleted" })
      : el("p", { class: "text", text: message.content });
    const item = el("li", { class: mine ? "message mine" : "message", "data-seq": String(message.seq) }, meta, text);
    item.append(el("p", { class: "seen" }));
    if (mine && !message.deleted) item.append(this.ownActions(message, item, text));
    return item;
  }

  ownActions(message, item, text) {
    return el(
      "div",
      { class: "actions" },
      el("button", { type: "button", onclick: () => this.openEditor(message, item, text) }, "Edit"),
      el("button", { type: "button", onclick: () => this.actions.remove(message) }, "Delete"),
    );
  }

  openEditor(message, item, text) {
    this.editing = message.seq;
    const input = el("textarea", { class: "edit", "aria-label": "Edit text", rows: 2 });
    input.value = message.content;
    const error = el("p", { class: "error", role: "alert" });
    const close = () => {
      this.editing = null;
      this.put(this.messages.get(message.seq));
    };
    const form = el(
      "form",
      {
        class: "editor",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            await this.actions.edit(message, input.value);
            close();
          } catch (failure) {
            error.textContent = failure.message;
          }
        },
      },
      input,
      el("button", { type: "submit" }, "Save"),
      el("button", { type: "button", onclick: close }, "Cancel"),
      error,
    );
    text.replaceWith(form);
    item.querySelector(".actions")?.remove();
    input.focus();
  }

  /** "Seen by" under the newest own message each other reader has reached. */
  showSeen() {
    const seenAt = new Map();
    const own = [...this.messages.values()].filter((m) => m.senderId === this.me).map((m) => m.seq);
    for (const [reader, readSeq] of this.readers) {
      const reached = own.filter((seq) => seq <= readSeq);
      if (reached.length === 0) continue;
      const seq = Math.max(...reached);
      seenAt.set(seq, [...(seenAt.get(seq) || []), this.actions.name(reader)]);
    }
    for (const [seq, item] of this.items) {
      const line = item.querySelector(".seen");
      const names = seenAt.get(seq);
      line.textContent = names ? `Seen by ${names.sort().join(", ")}` : "";
    }
  }
}
