// One signed-in chat session on a socket: joining a room, the composer, typing, read marks,
// credit events and reconnection (re-join with the last seq seen, and catch up on everything
// after it: roomJoined's first page, then GET /api/rooms/{roomId}/messages page by page).

import { decodeEntities, h, notice, replaceChildren } from "../shared/dom.js";
import { call, newId } from "../shared/socket.js";
import { MessageList } from "./messages.js";

const TYPING_IDLE_MS = 2500; // typing-stop after this long without a keystroke
const TYPING_STALE_MS = 8000; // forget someone's typing if their stop never arrives
const CATCH_UP_PAGE = 200; // messages per catch-up page (the server's HISTORY_PAGE_MAX by default)

export class ChatRoom {
  /**
   * @param {{socket, api, identity, balance, credits: import("./credits.js").CreditNotices,
   *          pageNotices: HTMLElement, tip: () => import("./billing.js").TipDialog}} o
   */
  constructor({ socket, api, identity, balance, credits, pageNotices, openTip }) {
    this.socket = socket;
    this.api = api;
    this.identity = identity;
    this.balance = balance;
    this.credits = credits;
    this.pageNotices = pageNotices;
    this.openTip = openTip;
    this.roomId = null;
    this.shutdownNotice = null;
    this.typingTimer = null;
    this.typingSent = false;
    this.typers = new Map(); // userId -> {name, timer}
    this.members = new Map(); // userId -> name

    this.el = {
      roomForm: document.getElementById("room-form"),
      roomInput: document.getElementById("room-id"),
      roomTitle: document.getElementById("room-title"),
      composer: document.getElementById("composer"),
      input: document.getElementById("message"),
      send: document.getElementById("send"),
      typing: document.getElementById("typing"),
      memberCount: document.getElementById("member-count"),
      members: document.getElementById("members"),
      connection: document.getElementById("connection"),
    };
    this.list = new MessageList(document.getElementById("messages"), {
      selfId: identity.userId,
      onAuthor: (userId) => this.openTip(userId),
      onSeen: (messageId) => this._markRead(messageId),
    });
    this._bindUi();
    this._bindSocket();
  }

  // --- UI ----------------------------------------------------------------------
  _bindUi() {
    this.el.roomForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const roomId = this.el.roomInput.value.trim();
      if (roomId) this.join(roomId);
    });
    this.el.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.el.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.send();
      }
    });
    this.el.input.addEventListener("input", () => this._typed());
  }

  _setConnection(state, text) {
    const el = this.el.connection;
    el.hidden = false;
    el.className = `connection ${state}`;
    el.textContent = text;
    el.dataset.state = state;
  }

  _enableComposer(enabled) {
    this.el.input.disabled = !enabled;
    this.el.send.disabled = !enabled;
    if (enabled) this.el.input.placeholder = "Write a message. Enter sends, Shift+Enter adds a line.";
  }

  // --- socket events -------------------------------------------------------------
  _bindSocket() {
    const s = this.socket;
    this._setConnection("connecting", "connecting…");
    s.on("connect", () => {
      this._setConnection("online", "connected");
      if (this.shutdownNotice) this.shutdownNotice.remove(); // back on a node
      // First connect: the room chosen meanwhile; every reconnect: re-join, and the history resyncs.
      if (this.roomId) this._emitJoin(this.roomId);
      this.balance.refresh();
    });
    s.on("disconnect", (reason) => {
      this._setConnection("offline", "reconnecting…");
      this._enableComposer(false);
      if (reason === "io server disconnect") s.connect(); // the server closed us: ask again ourselves
    });
    s.on("connect_error", (err) => {
      if (err && err.message === "unauthorized") {
        this._setConnection("offline", "signed out");
        notice(this.pageNotices, "error", "The server refused your token (unauthorized). Sign out and sign in again.");
      } else {
        this._setConnection("offline", "reconnecting…");
      }
    });
    s.on("serverShutdown", () => {
      if (this.shutdownNotice) this.shutdownNotice.remove();
      this.shutdownNotice = notice(this.pageNotices, "info", "The server you were on is restarting; reconnecting…");
    });
    s.on("roomJoined", (ev) => this._roomJoined(ev));
    s.on("roomLeft", () => {});
    s.on("newMessage", (msg) => this._newMessage(msg));
    s.on("messageDelta", (ev) => this._forRoom(ev) && this.list.appendDelta(ev));
    s.on("agentError", (ev) => {
      if (!this._forRoom(ev)) return;
      this.list.dropStreaming(ev.replyTo);
      this.credits.info(`The AI agent could not answer (${ev.code}): ${ev.message || "try again later"}`, "error");
    });
    s.on("userJoined", (ev) => {
      if (!this._forRoom(ev)) return;
      this._member(ev.userId, ev.username, true);
      this.list.system(`${decodeEntities(ev.username || ev.userId)} joined`);
    });
    s.on("userLeft", (ev) => {
      if (!this._forRoom(ev)) return;
      this._member(ev.userId, ev.username, false);
      this._typing(ev.userId, ev.username, false);
      this.list.system(`${decodeEntities(ev.username || ev.userId)} left`);
    });
    s.on("userTyping", (ev) => this._forRoom(ev) && this._typing(ev.userId, ev.username, ev.typing === true));
    s.on("messageRead", (ev) => this._forRoom(ev) && this.list.markRead(ev.messageId, ev.userId));
    s.on("creditWarning", (ev) => {
      this.credits.warning(ev || {});
      this.balance.show(ev && ev.credits, ev && ev.wordsLeft);
      this.balance.refreshSoon();
    });
    s.on("creditError", (ev) => this._creditError(ev || {}));
    s.on("quotaExceeded", (ev) => {
      ev = ev || {};
      this.list.failSend(ev, "not sent: daily quota reached");
      this.credits.quota(ev);
    });
    s.on("error", (ev) => this._serverError(ev || {}));
    s.on("creditsPurchased", (ev) => {
      this.credits.clearErrors();
      this.credits.remove("credit-warning");
      this.credits.info(`${ev.credits} credits added. Thank you!`);
      this.balance.refreshSoon();
    });
    s.on("creditsRefunded", () => this.balance.refreshSoon());
    s.on("tipReceived", (ev) => {
      this.credits.remove("credit-warning"); // a tip received is a top-up
      this.credits.info(`${decodeEntities(ev.fromUsername || ev.fromUserId)} tipped you ${ev.credits} credit(s).`);
      this.balance.refreshSoon();
    });
    s.on("tipSent", (ev) => {
      this.credits.remove("tip-pending");
      this.credits.info(`You tipped ${ev.toUserId} ${ev.credits} credit(s).`);
      this.balance.refreshSoon();
    });
    s.on("planUpdated", (ev) => {
      this.credits.info(`Your plan is now ${ev.plan} (${ev.status}).`);
      this.balance.refreshSoon();
    });
    s.on("walletDeposit", () => this.balance.refreshSoon());
  }

  _forRoom(ev) {
    return Boolean(ev && typeof ev === "object" && this.roomId && ev.roomId === this.roomId);
  }

  // --- rooms ---------------------------------------------------------------------
  async join(roomId) {
    if (this.roomId && this.roomId !== roomId && this.socket.connected) {
      await call(this.socket, "leaveRoom", { roomId: this.roomId });
    }
    if (this.roomId !== roomId) {
      this.list.reset();
      this.members.clear();
      this._renderMembers(null);
      for (const userId of [...this.typers.keys()]) this._typing(userId, null, false);
    }
    this.roomId = roomId;
    this.el.roomTitle.textContent = `joining ${roomId}…`;
    if (this.socket.connected) await this._emitJoin(roomId); // otherwise "connect" joins it
  }

  async _emitJoin(roomId) {
    // Back in a room it already shows (a reconnect): ask only for what came after its last seq.
    const since = roomId === this.roomId ? this.list.lastSeq() : null;
    const ack = await call(this.socket, "joinRoom", since === null ? { roomId } : { roomId, sinceSeq: since });
    if (ack.status !== "accepted" && roomId === this.roomId) {
      const error = ack.error || {};
      this.el.roomTitle.textContent = "";
      notice(this.pageNotices, "error", `Could not join ${roomId}: ${error.message || error.code}`);
      if (error.code !== "disconnected" && error.code !== "timeout") this.roomId = null;
    }
  }

  _roomJoined(ev) {
    if (!ev || ev.roomId !== this.roomId) return;
    this.el.roomTitle.textContent = `Room ${ev.roomId}`;
    this.el.roomTitle.dataset.roomId = ev.roomId;
    this.list.mergeHistory(ev.history);
    if (ev.hasMore) this._catchUp(ev.roomId);
    this._member(this.identity.userId, this.identity.name, true);
    this._renderMembers(typeof ev.memberCount === "number" ? ev.memberCount : null);
    this._enableComposer(true);
    this.el.input.focus();
  }

  /** The rest of what a reconnect missed, page by page after the last seq shown. */
  async _catchUp(roomId) {
    for (;;) {
      const after = this.list.lastSeq();
      if (after === null || roomId !== this.roomId) return;
      let page;
      try {
        page = await this.api.get(
          `/api/rooms/${encodeURIComponent(roomId)}/messages?afterSeq=${after}&limit=${CATCH_UP_PAGE}`,
        );
      } catch (err) {
        notice(this.pageNotices, "error", `Could not load the messages you missed: ${err.message}`);
        return;
      }
      if (roomId !== this.roomId) return;
      this.list.mergeHistory(page.messages);
      if (!page.hasMore || !page.messages.length) return;
    }
  }

  _member(userId, name, present) {
    if (typeof userId !== "string") return;
    if (present) this.members.set(userId, decodeEntities(name || userId));
    else this.members.delete(userId);
    this.list.rememberName(userId, name);
    this._renderMembers(null);
  }

  _renderMembers(count) {
    if (count !== null) this.memberCount = count;
    const known = this.members.size;
    const total = Math.max(this.memberCount || 0, known);
    this.el.memberCount.textContent = this.roomId ? `${total} connected` : "";
    replaceChildren(
      this.el.members,
      [...this.members].map(([userId, name]) =>
        h(
          "li",
          {},
          userId === this.identity.userId
            ? `${name} (you)`
            : h("button", { type: "button", class: "link", title: `Tip ${name}`, onclick: () => this.openTip(userId) }, name),
        ),
      ),
    );
  }

  // --- sending -------------------------------------------------------------------
  async send() {
    const text = this.el.input.value;
    if (!text.trim() || !this.roomId) return;
    if (text.length > 4000) {
      this.credits.info("A message can have at most 4000 characters.", "error");
      return;
    }
    const clientMessageId = newId("m");
    this.el.input.value = "";
    this._stopTyping();
    this.credits.clearErrors();
    this.list.addPending(clientMessageId, text, `${this.identity.name} (you)`);
    const ack = await call(this.socket, "sendMessage", { roomId: this.roomId, message: text, clientMessageId });
    this.list.ackPending(clientMessageId, ack);
    if (ack.status !== "accepted") {
      const error = ack.error || {};
      this.credits.info(`Message not sent: ${error.message || error.code}`, "error");
    }
  }

  _newMessage(msg) {
    if (!this._forRoom(msg)) return;
    this.list.upsert(msg);
    if (msg.userId === this.identity.userId && msg.kind !== "ai") {
      const info = msg.creditInfo;
      if (info && typeof info.wordsLeft === "number") this.balance.show(undefined, info.wordsLeft);
      this.balance.refreshSoon();
    }
    if (msg.kind === "ai" || msg.kind === "tip") this.balance.refreshSoon(); // AI replies are charged to the asker
    if (typeof msg.userId === "string") this._typing(msg.userId, null, false);
  }

  _creditError(ev) {
    if (ev.kind === "tip") this.credits.remove("tip-pending");
    this.list.failSend(ev, "not sent: not enough credits");
    this.credits.error(ev);
    this.balance.refreshSoon();
  }

  _serverError(ev) {
    const failed = this.list.failSend(ev, `not sent: ${ev.message || ev.code || "error"}`);
    if (ev.event === "sendTip") this.credits.remove("tip-pending");
    const what = ev.event === "sendTip" ? "Tip not sent" : failed ? "Message not sent" : "Error";
    this.credits.info(`${what}: ${ev.message || ev.code || "the server reported an error"}`, "error");
  }

  // --- typing and read marks -----------------------------------------------------
  _typed() {
    if (!this.roomId || !this.socket.connected) return;
    if (!this.typingSent) {
      this.typingSent = true;
      this.socket.emit("typing-start", { roomId: this.roomId });
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this._stopTyping(), TYPING_IDLE_MS);
  }

  _stopTyping() {
    clearTimeout(this.typingTimer);
    if (this.typingSent && this.roomId && this.socket.connected) this.socket.emit("typing-stop", { roomId: this.roomId });
    this.typingSent = false;
  }

  _typing(userId, username, typing) {
    if (typeof userId !== "string" || userId === this.identity.userId) return;
    const current = this.typers.get(userId);
    if (current) clearTimeout(current.timer);
    if (typing) {
      const name = decodeEntities(username || current?.name || userId);
      this.typers.set(userId, { name, timer: setTimeout(() => this._typing(userId, null, false), TYPING_STALE_MS) });
    } else {
      this.typers.delete(userId);
    }
    const names = [...this.typers.values()].map((t) => t.name);
    this.el.typing.textContent =
      names.length === 0
        ? ""
        : names.length === 1
          ? `${names[0]} is typing…`
          : names.length === 2
            ? `${names[0]} and ${names[1]} are typing…`
            : `${names.length} people are typing…`;
  }

  _markRead(messageId) {
    if (this.roomId && this.socket.connected) this.socket.emit("mark-read", { roomId: this.roomId, messageId });
  }
}
