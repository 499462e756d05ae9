// The message list: one element per messageId (history and live events merge without
// duplicates), the sender's pending bubbles until the server answers, AI replies as they stream.

import { decodeEntities, formatTime, h } from "../shared/dom.js";

const KIND_LABEL = { ai: "AI", tip: "tip", inbound: "inbound", outbound: "outbound" };

export class MessageList {
  /**
   * @param {HTMLElement} listEl the <ol>
   * @param {{selfId: string, onAuthor?: (userId, name) => void, onSeen?: (messageId) => void}} options
   */
  constructor(listEl, { selfId, onAuthor = () => {}, onSeen = () => {} }) {
    this.listEl = listEl;
    this.selfId = selfId;
    this.onAuthor = onAuthor;
    this.onSeen = onSeen;
    this.byId = new Map(); // messageId -> {data, el}
    this.pending = new Map(); // clientMessageId -> el (own sends not yet in the room)
    this.unanswered = new Map(); // clientMessageId -> el whose ack timed out: it may still arrive
    this.readers = new Map(); // messageId -> Set of reader names
    this.names = new Map(); // userId -> display name
    this.seen = new Set();
    this.observer =
      "IntersectionObserver" in window
        ? new IntersectionObserver((entries) => this._visible(entries), { root: listEl, threshold: 0.6 })
        : null;
  }

  reset() {
    this.byId.clear();
    this.pending.clear();
    this.unanswered.clear();
    this.readers.clear();
    this.seen.clear();
    if (this.observer) this.observer.disconnect();
    this.listEl.replaceChildren();
  }

  nameOf(userId) {
    return this.names.get(userId) || userId;
  }

  rememberName(userId, name) {
    if (typeof userId === "string" && userId && typeof name === "string" && name) {
      this.names.set(userId, decodeEntities(name));
    }
  }

  /** A newMessage payload (live or from history). Unknown fields are ignored. */
  upsert(msg) {
    if (!msg || typeof msg !== "object" || typeof msg.messageId !== "string") return null;
    this.rememberName(msg.userId, msg.username);
    const stick = this._atBottom();
    const own = msg.userId === this.selfId && msg.kind !== "ai";
    let el = this.byId.get(msg.messageId)?.el;
    const cid = own ? msg.clientMessageId : null;
    const pendingEl = cid ? this.pending.get(cid) || this.unanswered.get(cid) : null;
    if (!el && pendingEl) {
      el = pendingEl;
      this.pending.delete(cid);
      this.unanswered.delete(cid);
    }
    const fresh = this._render(msg, own);
    if (el) {
      el.replaceWith(fresh);
    } else {
      this.listEl.appendChild(fresh);
    }
    this.byId.set(msg.messageId, { data: msg, el: fresh });
    this._renderReaders(msg.messageId);
    if (!own && this.observer) this.observer.observe(fresh);
    if (stick) this._scrollToBottom();
    return fresh;
  }

  /** The highest room seq among the messages shown (null: none carries one yet). */
  lastSeq() {
    let last = null;
    for (const { data } of this.byId.values()) {
      if (Number.isSafeInteger(data.seq) && (last === null || data.seq > last)) last = data.seq;
    }
    return last;
  }

  /** Merge a room's history (oldest first): nothing twice, then everything in time order. */
  mergeHistory(history) {
    if (!Array.isArray(history)) return;
    for (const msg of history) {
      if (msg && typeof msg.messageId === "string") this.upsert(msg);
    }
    const ordered = [...this.byId.values()].sort((a, b) => (a.data.timestamp || 0) - (b.data.timestamp || 0));
    for (const { el } of ordered) this.listEl.appendChild(el);
    for (const el of this.pending.values()) this.listEl.appendChild(el);
    this._scrollToBottom();
  }

  /** The sender's own bubble, shown at once; the server's answer updates it. */
  addPending(clientMessageId, text, name) {
    const el = h(
      "li",
      { class: "msg own kind-user pending", dataset: { clientMessageId, kind: "user" } },
      h("div", { class: "msg-meta" }, h("span", { class: "msg-author" }, name), h("span", { class: "msg-status" }, "sending…")),
      h("div", { class: "msg-text" }, text),
    );
    this.pending.set(clientMessageId, el);
    this.listEl.appendChild(el);
    this._scrollToBottom();
    return el;
  }

  /** The ack of a sendMessage: accepted (queued) or rejected with the server's error. */
  ackPending(clientMessageId, ack) {
    const el = this.pending.get(clientMessageId);
    if (!el) return;
    if (ack && ack.status === "accepted") {
      if (typeof ack.messageId === "string") el.dataset.messageId = ack.messageId;
      this._status(el, "accepted");
    } else {
      const error = (ack && ack.error) || {};
      this._fail(el, `not sent: ${error.message || error.code || "rejected"}`);
      this.pending.delete(clientMessageId);
      if (error.code === "timeout") this.unanswered.set(clientMessageId, el); // queued after all?
    }
  }

  /** A send the worker refused (creditError, quotaExceeded, error): mark its bubble. */
  failSend({ clientMessageId, messageId }, reason) {
    let el = clientMessageId ? this.pending.get(clientMessageId) : null;
    if (!el && messageId) {
      el = [...this.pending.values()].find((p) => p.dataset.messageId === messageId) || null;
    }
    if (!el) return false;
    this._fail(el, reason);
    this.pending.delete(el.dataset.clientMessageId);
    return true;
  }

  /** messageDelta: append to the AI reply's bubble, creating it on the first piece. */
  appendDelta(event) {
    if (!event || typeof event.messageId !== "string" || typeof event.delta !== "string") return;
    const existing = this.byId.get(event.messageId);
    if (existing && !existing.el.classList.contains("streaming")) return; // the final text is in
    const stick = this._atBottom();
    let el = existing?.el;
    if (!el) {
      el = h(
        "li",
        { class: "msg kind-ai streaming", dataset: { messageId: event.messageId, kind: "ai", replyTo: event.replyTo || "" } },
        h("div", { class: "msg-meta" }, h("span", { class: "msg-author" }, "AgenteIA"), h("span", { class: "msg-status" }, "writing…")),
        h("div", { class: "msg-text" }, ""),
      );
      this.listEl.appendChild(el);
      this.byId.set(event.messageId, { data: { messageId: event.messageId, timestamp: Date.now(), kind: "ai" }, el });
    }
    const text = el.querySelector(".msg-text");
    text.textContent += decodeEntities(event.delta);
    if (stick) this._scrollToBottom();
  }

  /** agentError: a reply that will not come; drop its partial bubble. */
  dropStreaming(replyTo) {
    for (const [id, { el }] of this.byId) {
      if (el.classList.contains("streaming") && el.dataset.replyTo === replyTo) {
        el.remove();
        this.byId.delete(id);
      }
    }
  }

  /** messageRead: someone else read one of the messages. */
  markRead(messageId, userId) {
    if (typeof messageId !== "string" || typeof userId !== "string" || userId === this.selfId) return;
    if (!this.readers.has(messageId)) this.readers.set(messageId, new Set());
    this.readers.get(messageId).add(userId);
    this._renderReaders(messageId);
  }

  system(text) {
    const stick = this._atBottom();
    this.listEl.appendChild(h("li", { class: "system-line" }, text));
    if (stick) this._scrollToBottom();
  }

  // --- rendering -------------------------------------------------------------
  _render(msg, own) {
    const kind = typeof msg.kind === "string" ? msg.kind : "user";
    const name = decodeEntities(typeof msg.username === "string" ? msg.username : msg.userId || "");
    const author =
      !own && msg.userId && kind !== "ai" && kind !== "inbound"
        ? h("button", { type: "button", class: "link msg-author", title: `Tip ${name}`, onclick: () => this.onAuthor(msg.userId, name) }, name)
        : h("span", { class: "msg-author" }, own ? `${name} (you)` : name);
    const meta = h(
      "div",
      { class: "msg-meta" },
      author,
      KIND_LABEL[kind] ? h("span", { class: "msg-kind" }, KIND_LABEL[kind]) : null,
      typeof msg.timestamp === "number" ? h("time", { datetime: new Date(msg.timestamp).toISOString() }, formatTime(msg.timestamp)) : null,
      own && kind === "user" ? h("span", { class: "msg-status" }, this._chargeText(msg)) : null,
    );
    return h(
      "li",
      {
        class: `msg kind-${kind}${own ? " own" : ""}`,
        dataset: { messageId: msg.messageId, kind, userId: msg.userId || "", clientMessageId: msg.clientMessageId || "" },
      },
      meta,
      h("div", { class: "msg-text" }, decodeEntities(typeof msg.message === "string" ? msg.message : msg.content || "")),
      h("div", { class: "msg-read", hidden: true }),
    );
  }

  _chargeText(msg) {
    const info = msg.creditInfo;
    if (!info || typeof info.charged !== "number") return "delivered";
    const credits = info.charged === 1 ? "1 credit" : `${info.charged} credits`;
    return `delivered · ${credits} · ${info.wordsLeft} words left`;
  }

  _renderReaders(messageId) {
    const entry = this.byId.get(messageId);
    const readers = this.readers.get(messageId);
    if (!entry || !readers || !readers.size) return;
    const el = entry.el.querySelector(".msg-read");
    if (!el) return;
    el.hidden = false;
    el.textContent = `read by ${[...readers].map((id) => this.nameOf(id)).join(", ")}`;
  }

  _status(el, text, isError = false) {
    const status = el.querySelector(".msg-status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  _fail(el, reason) {
    el.classList.remove("pending");
    el.classList.add("failed");
    this._status(el, reason, true);
  }

  _visible(entries) {
    if (document.visibilityState !== "visible") return;
    for (const entry of entries) {
      const id = entry.target.dataset.messageId;
      if (!entry.isIntersecting || !id || this.seen.has(id)) continue;
      this.seen.add(id);
      this.observer.unobserve(entry.target);
      this.onSeen(id);
    }
  }

  _atBottom() {
    const el = this.listEl;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  _scrollToBottom() {
    this.listEl.scrollTop = this.listEl.scrollHeight;
  }
}
