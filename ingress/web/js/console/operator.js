// The operator's live inbox: the tenant's conversations (channel, contact, lead temperature,
// intent, who holds it), kept current by the tenant channel's events; one conversation open at a
// time, with its messages, the delivery status of what was sent, take over / hand back, and a
// reply box that is enabled while you hold the conversation (the AI agent stays quiet then).

import { decodeEntities, formatTime, h, notice, replaceChildren, show } from "../shared/dom.js";
import { call, newId } from "../shared/socket.js";

const CHANNELS = {
  twilio_whatsapp: "WhatsApp",
  meta_whatsapp: "WhatsApp",
  twilio_sms: "SMS",
  instagram: "Instagram",
};
const LEADS = new Set(["hot", "warm", "cold"]);
const STATUS_RANK = { queued: 0, sending: 1, sent: 2, delivered: 3, read: 4 };
const CLASSIFICATION = ["intent", "confidence", "lead", "summary", "contactName"];
const TAKEOVER = ["takenOverBy", "takenOverByName", "takenOverAt"];
const PAGE = 50;
const ADMIN_REFRESH_MS = 5000; // admins are not in the tenant channel: their list is re-read

const str = (value) => (typeof value === "string" ? value : null);
const channelName = (channel) => CHANNELS[channel] || String(channel || "?");

/** A status may only move forward; ``failed`` and ``read`` are final (as on the server). */
function advance(current, reported) {
  if (!reported || current === reported) return current;
  if (current === "failed" || current === "read") return current;
  if (reported === "failed") return reported;
  if (!(reported in STATUS_RANK)) return current;
  return current in STATUS_RANK && STATUS_RANK[current] >= STATUS_RANK[reported] ? current : reported;
}

/** Merge a conversationUpdated (or list row) into what we know: absent or null details keep theirs. */
function merge(old, update) {
  const next = { ...(old || {}) };
  for (const key of ["conversationId", "roomId", "channel", "contact"]) if (str(update[key])) next[key] = update[key];
  for (const key of CLASSIFICATION) if (update[key] !== undefined && update[key] !== null) next[key] = update[key];
  if (str(update.lastMessage)) {
    next.lastMessage = update.lastMessage;
    if (str(update.lastMessageKind)) next.lastMessageKind = update.lastMessageKind;
  }
  if (typeof update.lastMessageAt === "number") next.lastMessageAt = Math.max(next.lastMessageAt || 0, update.lastMessageAt);
  for (const key of TAKEOVER) if (key in update) next[key] = update[key] ?? null;
  return next;
}

export function mountOperator(root, ctx) {
  const { api, socket, identity } = ctx;
  const tenant = ctx.tenant || identity.tenant;
  const live = identity.role === "operator" && identity.tenant === tenant; // in the tenant channel
  const conversations = new Map(); // roomId -> conversation
  let nextCursor = null;
  let openRoom = null;
  let messages = new Map(); // messageId -> {data, el, status}
  const listeners = [];

  // --- layout ---
  const notices = h("div", { class: "notices", "aria-live": "assertive", "data-testid": "inbox-notices" });
  const list = h("ul", { class: "conversation-list", "aria-label": "Conversations", "data-testid": "conversation-list" });
  const empty = h("p", { class: "muted" }, "No conversations yet. New messages appear here as they arrive.");
  const more = h("button", { type: "button", class: "link", hidden: true, onclick: () => load(nextCursor) }, "Load older");
  const title = h("h2", { class: "conv-title" }, "Choose a conversation");
  const details = h("div", { class: "conv-details" });
  const holder = h("p", { class: "conv-holder", "data-testid": "holder", "aria-live": "polite" });
  const takeButton = h("button", { type: "button", class: "primary", hidden: true, onclick: () => takeOver(false) }, "Take over");
  const releaseButton = h("button", { type: "button", hidden: true, onclick: () => takeOver(true) }, "Hand back");
  const log = h("ol", { class: "messages conv-messages", "aria-label": "Messages", tabindex: "0", "data-testid": "conversation-messages" });
  const text = h("textarea", {
    id: "reply", rows: "2", maxlength: "4000", disabled: true, "aria-label": "Reply",
    placeholder: "Take over the conversation to reply. Enter sends, Shift+Enter adds a line.",
  });
  const send = h("button", { type: "submit", class: "primary", disabled: true }, "Send");
  const composer = h("form", { class: "composer", onsubmit: (event) => { event.preventDefault(); reply(); } }, text, send);
  const pane = h("section", { class: "conversation card", hidden: true, "aria-labelledby": "conv-title" },
    h("header", { class: "conv-header" }, h("div", { class: "conv-heading" }, title, details, holder),
      h("div", { class: "conv-actions" }, takeButton, releaseButton)),
    log, composer);
  title.id = "conv-title";
  const placeholder = h("section", { class: "conversation card placeholder" },
    h("p", { class: "muted" }, "Select a conversation to read it, take it over from the AI agent and reply."));
  replaceChildren(root,
    notices,
    h("div", { class: "inbox" },
      h("aside", { class: "inbox-list card", "aria-labelledby": "inbox-title" },
        h("h2", { id: "inbox-title" }, `Inbox · ${tenant}`), empty, list, more),
      placeholder, pane));

  const say = (kind, message) => notice(notices, kind, message);

  // --- the list ---
  function chip(conv) {
    const lead = LEADS.has(conv.lead) ? conv.lead : null;
    return lead ? h("span", { class: `chip lead-${lead}`, "data-testid": "lead" }, lead) : null;
  }

  function row(conv) {
    const held = conv.takenOverBy
      ? h("span", { class: "held", "data-testid": "taken-over-by" }, `Taken over by ${conv.takenOverByName || conv.takenOverBy}`)
      : null;
    return h("li", {},
      h("button", {
        type: "button", class: `conversation-item${conv.roomId === openRoom ? " selected" : ""}`,
        "aria-current": conv.roomId === openRoom ? "true" : null, dataset: { roomId: conv.roomId },
        onclick: () => open(conv.roomId),
      },
      h("span", { class: "item-top" },
        h("span", { class: `badge channel-${channelName(conv.channel).toLowerCase()}`, "data-testid": "channel" }, channelName(conv.channel)),
        h("strong", { class: "contact" }, decodeEntities(conv.contactName || conv.contact || "")),
        chip(conv),
        conv.intent ? h("span", { class: "intent", "data-testid": "intent" }, decodeEntities(conv.intent)) : null,
        h("time", { class: "when" }, conv.lastMessageAt ? formatTime(conv.lastMessageAt) : "")),
      h("span", { class: "preview", "data-testid": "preview" }, decodeEntities(conv.lastMessage || "")),
      held));
  }

  function renderList() {
    const sorted = [...conversations.values()].sort((a, b) => (b.lastMessageAt || 0) - (a.lastMessageAt || 0));
    replaceChildren(list, sorted.map(row));
    show(empty, sorted.length === 0);
    show(more, Boolean(nextCursor));
    if (openRoom) renderHeader();
  }

  function upsert(update) {
    if (!update || typeof update !== "object" || !str(update.roomId)) return;
    if (str(update.tenantId) && update.tenantId !== tenant) return;
    conversations.set(update.roomId, merge(conversations.get(update.roomId), update));
    renderList();
  }

  async function load(cursor = null) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    try {
      const page = await api.get(`/api/tenants/${encodeURIComponent(tenant)}/conversations?${query}`);
      for (const conv of page.conversations) conversations.set(conv.roomId, merge(conversations.get(conv.roomId), conv));
      if (cursor || !nextCursor) nextCursor = page.nextCursor;
      renderList();
    } catch (err) {
      say("error", `Could not load the conversations: ${err.message}`);
    }
  }

  // --- the open conversation ---
  function renderHeader() {
    const conv = conversations.get(openRoom) || { roomId: openRoom };
    title.textContent = decodeEntities(conv.contactName || conv.contact || "Conversation");
    replaceChildren(details,
      h("span", { class: `badge channel-${channelName(conv.channel).toLowerCase()}` }, channelName(conv.channel)),
      conv.contactName && conv.contact ? h("span", { class: "muted" }, conv.contact) : null,
      chip(conv),
      conv.intent ? h("span", { class: "intent" }, `Intent: ${decodeEntities(conv.intent)}`) : null,
      conv.summary ? h("span", { class: "muted summary" }, decodeEntities(conv.summary)) : null);
    const mine = conv.takenOverBy === identity.userId;
    const other = conv.takenOverBy && !mine;
    holder.textContent = mine
      ? "You have taken over this conversation: the AI agent will not answer the contact."
      : other
        ? `Taken over by ${conv.takenOverByName || conv.takenOverBy}.`
        : "The AI agent handles this conversation (when the tenant has auto-reply on).";
    holder.className = `conv-holder${mine ? " mine" : other ? " other" : ""}`;
    show(takeButton, !mine && !other);
    show(releaseButton, mine || (other && identity.role === "admin"));
    text.disabled = !mine;
    send.disabled = !mine;
    text.placeholder = mine
      ? "Write to the contact. Enter sends, Shift+Enter adds a line."
      : "Take over the conversation to reply. Enter sends, Shift+Enter adds a line.";
  }

  function statusBadge(entry) {
    entry.statusEl.textContent = entry.status || "";
    entry.statusEl.className = `msg-status delivery status-${entry.status}${entry.status === "failed" ? " error" : ""}`;
    entry.statusEl.title = entry.error || "";
  }

  function addMessage(data) {
    if (!data || typeof data !== "object" || data.roomId !== openRoom || !str(data.messageId)) return;
    const known = messages.get(data.messageId);
    if (known && !known.streaming) return; // a redelivery: clients dedupe on messageId
    const kind = str(data.kind) || "user";
    const sent = kind === "outbound" || kind === "ai";
    const entry = known || { status: null, error: null };
    entry.data = data;
    entry.streaming = false;
    entry.status = advance(entry.status, str(data.deliveryStatus) || (sent ? "queued" : null));
    entry.statusEl = entry.statusEl || h("span", { "data-testid": "delivery-status" });
    const el = h("li", { class: `msg kind-${kind}`, dataset: { messageId: data.messageId } },
      h("div", { class: "msg-meta" },
        h("span", { class: "msg-author" }, decodeEntities(data.username || data.userId || "")),
        h("time", {}, formatTime(data.timestamp)),
        sent ? entry.statusEl : null),
      h("div", { class: "msg-text" }, decodeEntities(data.message ?? data.content ?? "")));
    if (sent) statusBadge(entry);
    if (entry.el) entry.el.replaceWith(el);
    else log.appendChild(el);
    entry.el = el;
    messages.set(data.messageId, entry);
    log.scrollTop = log.scrollHeight;
  }

  function onStatus(data) {
    if (!data || typeof data !== "object") return;
    const entry = messages.get(data.messageId);
    if (data.status === "failed") {
      const conv = conversations.get(data.roomId);
      const who = conv ? decodeEntities(conv.contactName || conv.contact) : "the contact";
      say("error", `A message to ${who} could not be delivered${data.errorMessage ? `: ${data.errorMessage}` : ""}.`);
    }
    if (!entry || data.roomId !== openRoom) return;
    entry.status = advance(entry.status, str(data.status));
    if (data.status === "failed") entry.error = [data.errorCode, data.errorMessage].filter(Boolean).join(": ");
    statusBadge(entry);
  }

  function onDelta(data) {
    if (!data || data.roomId !== openRoom || !str(data.messageId) || typeof data.delta !== "string") return;
    let entry = messages.get(data.messageId);
    if (entry && !entry.streaming) return;
    if (!entry) {
      const textEl = h("div", { class: "msg-text" });
      const el = h("li", { class: "msg kind-ai streaming", dataset: { messageId: data.messageId } },
        h("div", { class: "msg-meta" }, h("span", { class: "msg-author" }, "AI agent"), h("span", {}, "writing…")), textEl);
      log.appendChild(el);
      entry = { data: { messageId: data.messageId }, el, textEl, streaming: true, status: null };
      messages.set(data.messageId, entry);
    }
    entry.textEl.textContent += decodeEntities(data.delta);
    log.scrollTop = log.scrollHeight;
  }

  async function open(roomId) {
    if (openRoom === roomId) return;
    if (openRoom) call(socket, "leaveRoom", { roomId: openRoom });
    openRoom = roomId;
    messages = new Map();
    replaceChildren(log);
    show(placeholder, false);
    show(pane, true);
    renderList();
    await join();
    text.focus();
  }

  async function join() {
    if (!openRoom) return;
    const ack = await call(socket, "joinRoom", { roomId: openRoom });
    if (ack.status !== "accepted") say("error", `Could not open the conversation: ${ack.error?.message || "no answer"}`);
  }

  function onJoined(data) {
    if (!data || data.roomId !== openRoom || !Array.isArray(data.history)) return;
    messages = new Map();
    replaceChildren(log);
    for (const item of data.history) addMessage(item);
  }

  async function takeOver(release) {
    if (!openRoom) return;
    const ack = await call(socket, "takeOverConversation", { roomId: openRoom, release, requestId: newId("take") });
    if (ack.status !== "accepted") say("error", `Could not ${release ? "hand it back" : "take over"}: ${ack.error?.message || "no answer"}`);
  }

  async function reply() {
    const message = text.value.trim();
    if (!message || !openRoom || send.disabled) return;
    const clientMessageId = newId("op");
    const ack = await call(socket, "sendMessage", { roomId: openRoom, message, clientMessageId });
    if (ack.status !== "accepted") {
      say("error", `Not sent: ${ack.error?.message || "no answer"}`);
      return;
    }
    text.value = "";
  }

  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      reply();
    }
  });

  // --- events ---
  function on(event, handler) {
    const guarded = (data) => {
      try {
        handler(data);
      } catch (err) {
        console.error(`operator console: bad ${event} event`, err);
      }
    };
    socket.on(event, guarded);
    listeners.push([event, guarded]);
  }

  on("conversationUpdated", upsert);
  on("newMessage", (data) => {
    addMessage(data);
    if (data && conversations.has(data.roomId) && str(data.message)) {
      upsert({ roomId: data.roomId, lastMessage: data.message, lastMessageKind: data.kind, lastMessageAt: data.timestamp });
    }
  });
  on("roomJoined", onJoined);
  on("messageStatus", onStatus);
  on("messageDelta", onDelta);
  on("creditError", (data) => say("error", str(data?.message) || "The tenant is out of credit."));
  on("agentError", (data) => data?.roomId === openRoom && say("warn", `AI agent: ${str(data?.message) || "no answer"}`));
  on("error", (data) => say("error", str(data?.message) || "The server reported an error."));
  on("connect", () => {
    load();
    join();
  });

  load();
  const timer = live ? null : setInterval(() => load(), ADMIN_REFRESH_MS);

  return function unmount() {
    if (timer) clearInterval(timer);
    for (const [event, handler] of listeners) socket.off(event, handler);
    if (openRoom) call(socket, "leaveRoom", { roomId: openRoom });
    replaceChildren(root);
  };
}
