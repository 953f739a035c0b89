// The chat view: the user's conversations (title, last message, unread count, presence), the
// open conversation (history paged back on scroll, live messages, typing, read receipts, edit
// and delete), new conversations, and the live frames from /ws that keep all of it current.

import { conversationPath } from "./api.js";
import { byId, el, randomId, shortTime } from "./dom.js";
import { MessageList } from "./messages.js";

const PAGE = 50;
const TYPING_REFRESH_MS = 2000;
const TYPING_SHOWN_MS = 6000;
const OPEN_KEY = "tidings.openConversation";

export class Chat {
  constructor(api, me) {
    this.api = api;
    this.me = me;
    this.conversations = new Map();
    this.lastSeen = new Map();
    this.presence = new Map();
    this.names = new Map([[me.userId, me.name || me.userId]]);
    this.readers = new Map();
    this.view = null;
    this.typingSentAt = 0;
    this.typists = new Map();
  }

  /** Loads the conversations and reopens the one open before a reload. */
  async start() {
    this.wireForms();
    await this.loadConversations();
    const open = sessionStorage.getItem(OPEN_KEY);
    if (open && this.conversations.has(open)) await this.open(open);
  }

  /** `{conversationId: lastSeenSeq}` for the socket's resume. */
  resumePoints() {
    return Object.fromEntries(this.lastSeen);
  }

  async loadConversations() {
    let cursor = null;
    for (let page = 0; page < 20; page += 1) {
      const query = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : "?limit=100";
      const answer = await this.api.get(`/api/conversations${query}`);
      for (const conversation of answer.items) this.remember(conversation);
      cursor = answer.nextCursor;
      if (!cursor) break;
    }
    this.renderConversations();
  }

  /** Keeps a conversation from the API; a conversation seen for the first time resumes from its
   * last message (its history is read over HTTP when it is opened). */
  remember(conversation) {
    const known = this.conversations.get(conversation.id) || {};
    this.conversations.set(conversation.id, { ...known, ...conversation });
    if (!this.lastSeen.has(conversation.id)) {
      this.lastSeen.set(conversation.id, conversation.lastMessage?.seq || conversation.lastSeq || 0);
    }
    if (conversation.lastMessage) this.learnName(conversation.lastMessage);
  }

  learnName(message) {
    if (message.senderName) this.names.set(message.senderId, message.senderName);
  }

  name(userId) {
    return this.names.get(userId) || userId;
  }

  title(conversation) {
    if (conversation.title) return conversation.title;
    const others = (conversation.participants || []).filter((p) => p !== this.me.userId);
    return others.length ? others.map((p) => this.name(p)).join(", ") : "Just you";
  }

  // ---- the socket's frames ---------------------------------------------------------------

  onFrame(frame) {
    switch (frame.type) {
      case "message": return this.onMessage(frame.message);
      case "message.updated": return this.onUpdated(frame.message);
      case "message.deleted": return this.onDeleted(frame);
      case "typing": return this.onTyping(frame);
      case "read": return this.onRead(frame);
      case "presence":
        this.presence.set(frame.userId, frame.status);
        this.renderConversations();
        return this.renderPeople();
      case "conversation.updated": return this.onConversationUpdated(frame.conversation);
      default: return undefined;
    }
  }

  async onMessage(message) {
    this.learnName(message);
    const id = message.conversationId;
    this.lastSeen.set(id, Math.max(this.lastSeen.get(id) || 0, message.seq));
    let counted = false;
    if (!this.conversations.has(id)) {
      // A conversation someone else started with us: learn it (its unread count includes this
      // message already).
      try {
        this.remember(await this.api.get(conversationPath(id)));
        counted = true;
      } catch {
        return;
      }
    }
    const conversation = this.conversations.get(id);
    if (!conversation.lastMessage || conversation.lastMessage.seq <= message.seq) {
      conversation.lastMessage = message;
      conversation.updatedAt = message.sentAt;
    }
    const mine = message.senderId === this.me.userId;
    if (this.view?.id === id) {
      const atBottom = this.isNearBottom();
      this.view.list.put(message);
      this.typistStopped(message.senderId);
      if (atBottom || mine) this.scrollToBottom();
      this.markRead();
    } else if (!mine && !counted && message.seq > (conversation.lastReadSeq || 0)) {
      conversation.unreadCount = (conversation.unreadCount || 0) + 1;
    }
    this.renderConversations();
  }

  onUpdated(message) {
    this.learnName(message);
    const conversation = this.conversations.get(message.conversationId);
    if (conversation?.lastMessage?.id === message.id) conversation.lastMessage = message;
    if (this.view?.id === message.conversationId) this.view.list.put(message);
    this.renderConversations();
  }

  onDeleted({ conversationId, id, seq }) {
    const conversation = this.conversations.get(conversationId);
    if (conversation?.lastMessage?.id === id) {
      conversation.lastMessage = { ...conversation.lastMessage, content: "", deleted: true };
      this.renderConversations();
    }
    if (this.view?.id === conversationId) this.view.list.markDeleted(id, seq);
  }

  onTyping({ conversationId, userId, typing }) {
    if (this.view?.id !== conversationId || userId === this.me.userId) return;
    if (typing) {
      clearTimeout(this.typists.get(userId));
      this.typists.set(userId, setTimeout(() => this.typistStopped(userId), TYPING_SHOWN_MS));
    } else {
      this.typistStopped(userId);
      return;
    }
    this.renderTyping();
  }

  typistStopped(userId) {
    if (!this.typists.has(userId)) return;
    clearTimeout(this.typists.get(userId));
    this.typists.delete(userId);
    this.renderTyping();
  }

  onRead({ conversationId, userId, seq }) {
    const conversation = this.conversations.get(conversationId);
    if (userId === this.me.userId) {
      if (conversation && seq > (conversation.lastReadSeq || 0)) {
        conversation.lastReadSeq = seq;
        if (seq >= (conversation.lastMessage?.seq || 0)) conversation.unreadCount = 0;
        this.renderConversations();
      }
      return;
    }
    const readers = this.readers.get(conversationId) || new Map();
    readers.set(userId, Math.max(readers.get(userId) || 0, seq));
    this.readers.set(conversationId, readers);
    if (this.view?.id === conversationId) this.view.list.setReader(userId, seq);
  }

  onConversationUpdated(conversation) {
    if (!conversation.participants.includes(this.me.userId)) {
      this.conversations.delete(conversation.id);
      this.lastSeen.delete(conversation.id);
      if (this.view?.id === conversation.id) this.close();
    } else {
      this.remember(conversation);
    }
    this.renderConversations();
    this.renderPeople();
  }

  /** After a reconnect's resume: conversations created meanwhile appear too. */
  async onResumed() {
    try {
      await this.loadConversations();
    } catch {
      // The next reconnect tries again.
    }
  }

  // ---- the open conversation -------------------------------------------------------------

  async open(id) {
    const conversation = this.conversations.get(id);
    if (!conversation) return;
    sessionStorage.setItem(OPEN_KEY, id);
    const list = new MessageList(byId("messages"), this.me.userId, {
      edit: (message, content) => this.api.patch(conversationPath(id, `/messages/${encodeURIComponent(message.id)}`), { content }),
      remove: (message) => this.remove(message),
      name: (userId) => this.name(userId),
    });
    for (const [reader, seq] of this.readers.get(id) || []) list.setReader(reader, seq);
    const view = { id, list, hasMore: false, loading: false };
    this.view = view;
    this.typists.forEach((timer) => clearTimeout(timer));
    this.typists.clear();
    this.renderTyping();
    document.body.classList.add("conversation-open");
    byId("composer").hidden = false;
    byId("composer-error").textContent = "";
    this.renderHeader();
    this.renderConversations();
    let page;
    try {
      page = await this.api.get(conversationPath(id, `/messages?limit=${PAGE}`));
    } catch (error) {
      byId("composer-error").textContent = `Cannot read the history: ${error.message}`;
      return;
    }
    if (this.view !== view) return;
    page.items.forEach((message) => view.list.put(message));
    page.items.forEach((message) => this.learnName(message));
    view.hasMore = page.hasMore;
    this.scrollToBottom();
    await this.fillScreen(view);
    this.markRead();
  }

  close() {
    this.view = null;
    sessionStorage.removeItem(OPEN_KEY);
    document.body.classList.remove("conversation-open");
    byId("messages").replaceChildren();
    byId("composer").hidden = true;
    byId("conversation-title").textContent = "Pick a conversation";
    byId("conversation-people").textContent = "";
    this.renderConversations();
  }

  /** Pages back while the list is not tall enough to scroll (so scrolling can page further). */
  async fillScreen(view) {
    const list = byId("messages");
    while (this.view === view && view.hasMore && list.scrollHeight <= list.clientHeight) {
      if (!(await this.loadOlder())) break;
    }
  }

  /** One page of older messages, keeping what the user looks at in place. */
  async loadOlder() {
    const view = this.view;
    if (!view || view.loading || !view.hasMore) return false;
    const before = view.list.oldestSeq;
    if (before === null || before <= 1) {
      view.hasMore = false;
      return false;
    }
    view.loading = true;
    try {
      const page = await this.api.get(conversationPath(view.id, `/messages?limit=${PAGE}&before=${before}`));
      if (this.view !== view) return false;
      const list = byId("messages");
      const fromBottom = list.scrollHeight - list.scrollTop;
      page.items.forEach((message) => view.list.put(message));
      list.scrollTop = list.scrollHeight - fromBottom;
      view.hasMore = page.hasMore;
      return page.items.length > 0;
    } finally {
      view.loading = false;
    }
  }

  /** Marks everything shown as read, when the page is actually visible. */
  markRead() {
    const view = this.view;
    const conversation = view && this.conversations.get(view.id);
    if (!conversation || document.visibilityState !== "visible") return;
    const seq = view.list.newestSeq;
    if (seq <= (conversation.lastReadSeq || 0) || seq <= (view.readSent || 0)) {
      conversation.unreadCount = 0;
      return;
    }
    view.readSent = seq;
    conversation.unreadCount = 0;
    this.renderConversations();
    this.api.post(conversationPath(view.id, "/read"), { seq }).catch(() => {
      view.readSent = 0;
    });
  }

  async send(content) {
    const view = this.view;
    if (!view || !content.trim()) return;
    this.sendTyping(false);
    await this.api.post(conversationPath(view.id, "/messages"), { content, clientMessageId: randomId() });
  }

  async remove(message) {
    try {
      await this.api.delete(conversationPath(message.conversationId, `/messages/${encodeURIComponent(message.id)}`));
    } catch (error) {
      byId("composer-error").textContent = error.message;
    }
  }

  sendTyping(typing) {
    if (!this.view || !this.socket) return;
    const now = Date.now();
    if (typing && now - this.typingSentAt < TYPING_REFRESH_MS) return;
    if (!typing && this.typingSentAt === 0) return;
    this.typingSentAt = typing ? now : 0;
    this.socket.send({ type: "typing", conversationId: this.view.id, typing });
  }

  isNearBottom() {
    const list = byId("messages");
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  scrollToBottom() {
    const list = byId("messages");
    list.scrollTop = list.scrollHeight;
  }

  // ---- rendering ----------------------------------------------------------------------------

  renderConversations() {
    const sorted = [...this.conversations.values()].sort((a, b) =>
      String(b.lastMessage?.sentAt || b.updatedAt || "").localeCompare(String(a.lastMessage?.sentAt || a.updatedAt || "")));
    byId("conversations").replaceChildren(...sorted.map((c) => this.conversationItem(c)));
  }

  conversationItem(conversation) {
    const others = (conversation.participants || []).filter((p) => p !== this.me.userId);
    const online = others.some((p) => this.presence.get(p) === "online");
    const last = conversation.lastMessage;
    const preview = !last ? "No messages yet"
      : last.deleted ? "Message deleted"
      : `${last.senderId === this.me.userId ? "You" : this.name(last.senderId)}: ${last.content}`;
    const unread = conversation.unreadCount || 0;
    const button = el(
      "button",
      { type: "button", class: "conversation-entry", "aria-current": this.view?.id === conversation.id ? "true" : null, onclick: () => this.open(conversation.id) },
      el("span", { class: online ? "dot online" : "dot", title: online ? "online" : "offline" }, el("span", { class: "visually-hidden", text: online ? "online" : "" })),
      el("span", { class: "entry-title", text: this.title(conversation) }),
      unread ? el("span", { class: "unread" }, String(unread), el("span", { class: "visually-hidden", text: " unread" })) : null,
      el("span", { class: "preview", text: preview }),
      el("time", { class: "when", datetime: last?.sentAt || "", text: shortTime(last?.sentAt) }),
    );
    return el("li", {}, button);
  }

  renderHeader() {
    const conversation = this.view && this.conversations.get(this.view.id);
    if (!conversation) return;
    byId("conversation-title").textContent = this.title(conversation);
    this.renderPeople();
  }

  renderPeople() {
    const conversation = this.view && this.conversations.get(this.view.id);
    if (!conversation) return;
    const people = conversation.participants.map((p) =>
      `${p === this.me.userId ? "you" : this.name(p)}${p !== this.me.userId && this.presence.get(p) === "online" ? " (online)" : ""}`);
    byId("conversation-people").textContent = people.join(", ");
  }

  renderTyping() {
    const names = [...this.typists.keys()].map((u) => this.name(u));
    byId("typing").textContent = names.length === 0 ? ""
      : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
  }

  // ---- forms ----------------------------------------------------------------------------------

  wireForms() {
    const composer = byId("composer");
    const text = byId("composer-text");
    composer.addEventListener("submit", async (event) => {
      event.preventDefault();
      const content = text.value;
      if (!content.trim()) return;
      byId("composer-error").textContent = "";
      try {
        await this.send(content);
        if (text.value === content) text.value = "";
      } catch (error) {
        byId("composer-error").textContent = `Not sent: ${error.message}`;
      }
    });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    text.addEventListener("input", () => this.sendTyping(text.value.trim() !== ""));
    text.addEventListener("blur", () => this.sendTyping(false));
    byId("messages").addEventListener("scroll", () => {
      if (byId("messages").scrollTop < 80) this.loadOlder().catch(() => {});
    });
    byId("back").addEventListener("click", () => this.close());
    document.addEventListener("visibilitychange", () => this.markRead());
    this.wireNewConversation();
  }

  wireNewConversation() {
    const toggle = byId("new-conversation-toggle");
    const form = byId("new-conversation");
    toggle.addEventListener("click", () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) byId("new-participants").focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const participants = byId("new-participants").value.split(/[\s,]+/).filter(Boolean);
      const title = byId("new-title").value.trim();
      try {
        const created = await this.api.post("/api/conversations", { participants, ...(title ? { title } : {}) });
        this.remember(created);
        form.reset();
        form.hidden = true;
        toggle.setAttribute("aria-expanded", "false");
        byId("new-conversation-error").textContent = "";
        this.renderConversations();
        await this.open(created.id);
      } catch (error) {
        byId("new-conversation-error").textContent = error.message;
      }
    });
  }
}
