// The admin part of the console: queues at a glance, dead letters with requeue and purge, a user's
// credits (balance, ledger history, grants), tenants, and charts of the last hour.
// mountAdmin(root, ctx) renders into `root` and returns a function that stops its refreshes.

import { h, notice, replaceChildren } from "../shared/dom.js";
import { drawChart, formatNumber } from "./charts.js";

const QUEUES_EVERY_MS = 3000;
const CHARTS_EVERY_MS = 30_000;
const HISTORY_PAGE = 20;
const QUEUE_NAMES = ["chat", "outbound", "ai", "billing", "chain"]; // schemas/queues.py
const CHARTS = [
  { metric: "messages", title: "Messages per second", kind: "line", integer: false },
  { metric: "credits", title: "Credits charged", kind: "bar", integer: true },
  { metric: "ai_tokens", title: "AI tokens", kind: "bar", integer: true },
];

const enc = encodeURIComponent;

function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "–" : date.toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  if (s >= 86400) return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

const rate = (value) => (typeof value === "number" ? value.toFixed(1) : "–");
const count = (value) => (Number.isFinite(value) ? String(value) : "–");

/** A card with a heading, a notices area (role=status) and a body. */
function section(id, title, ...intro) {
  const notices = h("div", { class: "notices", "aria-live": "polite" });
  const body = h("div", { class: "admin-body" });
  const el = h("section", { class: "card admin-section", id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title), ...intro, notices, body);
  return { el, notices, body };
}

/** Show an error (or a success) in a section, replacing the previous one of the same kind. */
function say(sectionNotices, kind, text) {
  for (const old of sectionNotices.querySelectorAll(`.notice-${kind}`)) old.remove();
  return notice(sectionNotices, kind, text);
}

function errorText(err) {
  return err && err.message ? err.message : String(err);
}

/** Repeats `task` every `ms` while `alive()`; skips ticks while `visible()` is false. */
function every(ms, task, alive, visible) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped || !alive()) return;
    if (visible()) await task();
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// --- queues -----------------------------------------------------------------------------------

function queuesSection(api) {
  const s = section("admin-queues", "Queues");
  const source = h("p", { class: "muted admin-source" });
  const tbody = h("tbody");
  const headers = ["Queue", "State", "Ready", "Unacked", "Delayed", "Dead", "Consumers", "In/s", "Out/s", "Oldest"];
  replaceChildren(s.body,
    h("div", { class: "table-wrap" }, h("table", { class: "admin-table queues-table" },
      h("thead", {}, h("tr", {}, headers.map((name, i) => h("th", { scope: "col", class: i > 1 ? "num" : null }, name)))),
      tbody)),
    source);
  let failing = false;

  async function refresh() {
    let doc;
    try {
      doc = await api.get("/api/admin/queues");
    } catch (err) {
      failing = true;
      say(s.notices, "error", `Queue figures unavailable: ${errorText(err)}`);
      return;
    }
    if (failing) {
      failing = false;
      for (const old of s.notices.querySelectorAll(".notice-error")) old.remove();
    }
    const rows = Array.isArray(doc && doc.rows) ? doc.rows : [];
    replaceChildren(tbody, rows.map((row) => {
      const dead = Number(row.dead) || 0;
      const healthy = ["running", "idle", "flow"].includes(row.state);
      return h("tr", { class: dead > 0 ? "has-dead" : null, dataset: { queue: String(row.queue) } },
        h("th", { scope: "row" }, String(row.queue)),
        h("td", { class: healthy ? "state-ok" : "state-bad" }, String(row.state)),
        h("td", { class: "num" }, count(row.ready)),
        h("td", { class: "num" }, count(row.unacked)),
        h("td", { class: "num" }, count(row.delayed)),
        h("td", { class: dead > 0 ? "num dead" : "num", dataset: { col: "dead" } }, count(row.dead)),
        h("td", { class: row.consumers ? "num" : "num warn" }, count(row.consumers)),
        h("td", { class: "num" }, rate(row.in_rate)),
        h("td", { class: "num" }, rate(row.out_rate)),
        h("td", { class: "num" }, age(row.oldest_age_s)));
    }));
    const from = doc.source === "management"
      ? `management API, rates averaged over ${doc.rate_window_s} s`
      : `rabbitmqctl, no rates (${doc.fallback_reason || "management API unavailable"})`;
    source.textContent = `vhost ${doc.vhost} · ${from} · collected ${when(doc.collected_at)}`;
  }
  return { el: s.el, refresh };
}

// --- dead letters -----------------------------------------------------------------------------

function deadLettersSection(api, onChange) {
  const s = section("admin-dead", "Dead letters",
    h("p", { class: "muted" }, "Commands the workers gave up on. Requeue them once the cause is fixed; "
      + "workers apply each command at most once, so a requeue never duplicates an effect."));
  const queue = h("select", { name: "queue" }, h("option", { value: "" }, "all queues"),
    QUEUE_NAMES.map((name) => h("option", { value: name }, name)));
  const actor = h("input", { name: "actor", placeholder: "e.g. chat_send_message", autocomplete: "off" });
  const since = h("input", { name: "since", placeholder: "2h, 15m or 2026-11-23T10:00", autocomplete: "off" });
  const limit = h("input", { name: "limit", type: "number", min: "1", max: "500", value: "100" });
  const filters = h("form", { class: "row admin-filters", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("label", {}, "Queue", queue), h("label", {}, "Actor", actor), h("label", {}, "Failed since", since),
    h("label", {}, "At most", limit), h("button", { type: "submit" }, "Refresh list"));
  const summary = h("p", { class: "admin-summary", role: "status" });
  const all = h("input", { type: "checkbox", "aria-label": "Select all dead messages", onchange: () => {
    for (const box of tbody.querySelectorAll("input[type=checkbox]")) box.checked = all.checked;
    selectionChanged();
  } });
  const tbody = h("tbody");
  const table = h("table", { class: "admin-table dead-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all),
      ["Queue", "Actor", "Command", "Error", "Failed", "Retries"].map((name) => h("th", { scope: "col" }, name)))),
    tbody);
  const requeueButton = h("button", { type: "button", class: "primary", disabled: true, onclick: () => ask("requeue") },
    "Requeue selected");
  const purgeButton = h("button", { type: "button", class: "danger", disabled: true, onclick: () => ask("purge") },
    "Purge selected");
  const confirmBar = h("div", { class: "admin-confirm", role: "alertdialog", hidden: true, "aria-live": "assertive",
    onkeydown: (e) => { if (e.key === "Escape") confirmBar.hidden = true; } });
  replaceChildren(s.body, filters, summary, h("div", { class: "table-wrap" }, table),
    h("div", { class: "row admin-actions" }, requeueButton, purgeButton), confirmBar);
  let busy = false;

  function selected() {
    return [...tbody.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
  }

  function selectionChanged() {
    const n = selected().length;
    requeueButton.disabled = purgeButton.disabled = busy || n === 0;
    requeueButton.textContent = n ? `Requeue selected (${n})` : "Requeue selected";
    purgeButton.textContent = n ? `Purge selected (${n})` : "Purge selected";
  }

  function row(dead) {
    const id = dead.message_id;
    const error = String(dead.error || "unknown error");
    const tail = Array.isArray(dead.traceback_tail) ? dead.traceback_tail.join("\n") : "";
    const trace = typeof dead.traceback === "string" && dead.traceback ? dead.traceback : tail;
    return h("tr", { dataset: { messageId: id || "" } },
      h("td", {}, id ? h("input", { type: "checkbox", value: id, "aria-label": `Select ${dead.command_id || id}`,
        onchange: selectionChanged }) : null),
      h("td", {}, String(dead.queue || "–")),
      h("td", {}, String(dead.actor || "–")),
      h("td", { class: "mono" }, String(dead.command_id || "–"), h("div", { class: "muted" }, String(dead.command_type || ""))),
      h("td", { class: "dead-error" }, trace
        ? h("details", {}, h("summary", {}, error), h("pre", { class: "traceback" }, trace))
        : error),
      h("td", {}, when(dead.failed_at || dead.enqueued_at)),
      h("td", { class: "num" }, count(dead.retries)));
  }

  async function load() {
    const params = new URLSearchParams();
    if (queue.value) params.set("queue", queue.value);
    if (actor.value.trim()) params.set("actor", actor.value.trim());
    if (since.value.trim()) params.set("since", since.value.trim());
    if (limit.value) params.set("limit", limit.value);
    summary.textContent = "Loading…";
    let doc;
    try {
      doc = await api.get(`/api/admin/dead-letters?${params}`);
    } catch (err) {
      summary.textContent = "";
      say(s.notices, "error", `Could not list dead letters: ${errorText(err)}`);
      return;
    }
    for (const old of s.notices.querySelectorAll(".notice-error")) old.remove();
    const messages = Array.isArray(doc && doc.messages) ? doc.messages : [];
    replaceChildren(tbody, messages.map(row));
    all.checked = false;
    table.hidden = messages.length === 0;
    summary.textContent = messages.length === 0
      ? "No dead messages match."
      : `${messages.length} dead message${messages.length === 1 ? "" : "s"}${messages.length >= Number(doc.limit) ? ` (the first ${doc.limit})` : ""}.`;
    selectionChanged();
  }

  function ask(action) {
    const ids = selected();
    if (!ids.length) return;
    const what = `${ids.length} dead message${ids.length === 1 ? "" : "s"}`;
    const text = action === "requeue"
      ? `Requeue ${what} to ${ids.length === 1 ? "its" : "their"} work queue with fresh retries?`
      : `Delete ${what} for good? ${ids.length === 1 ? "It" : "They"} will never be applied.`;
    const yes = h("button", { type: "button", class: action === "purge" ? "danger" : "primary",
      onclick: () => act(action, ids) }, action === "requeue" ? "Yes, requeue" : "Yes, purge");
    const no = h("button", { type: "button", onclick: () => { confirmBar.hidden = true; } }, "Cancel");
    replaceChildren(confirmBar, h("span", {}, text), yes, no);
    confirmBar.hidden = false;
    yes.focus();
  }

  async function act(action, ids) {
    confirmBar.hidden = true;
    busy = true;
    selectionChanged();
    try {
      const result = await api.post(`/api/admin/dead-letters/${action}`, { messageIds: ids });
      const done = (action === "requeue" ? result.requeued : result.purged) || [];
      const missing = result.missing || [];
      const undecodable = result.undecodable || [];
      let text = `${action === "requeue" ? "Requeued" : "Purged"} ${done.length} message${done.length === 1 ? "" : "s"}.`;
      if (missing.length) text += ` ${missing.length} no longer in the dead-letter queue.`;
      if (undecodable.length) text += ` ${undecodable.length} undecodable, left for purge.`;
      say(s.notices, "info", text);
    } catch (err) {
      say(s.notices, "error", `${action === "requeue" ? "Requeue" : "Purge"} failed: ${errorText(err)}`);
    } finally {
      busy = false;
    }
    await load();
    onChange();
  }

  return { el: s.el, load };
}

// --- credits ----------------------------------------------------------------------------------

function creditsSection(api) {
  const s = section("admin-credits", "Credits");
  const userId = h("input", { name: "userId", required: true, maxlength: "128", autocomplete: "off", placeholder: "user id" });
  const lookup = h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); open(userId.value.trim()); } },
    h("label", {}, "User", userId), h("button", { type: "submit" }, "Look up"));
  const balance = h("dl", { class: "admin-balance" });
  const amount = h("input", { name: "credits", type: "number", min: "1", max: "1000000000", required: true });
  const reason = h("input", { name: "reason", required: true, maxlength: "200", placeholder: "why (kept in the ledger)" });
  const grantButton = h("button", { type: "submit", class: "primary" }, "Grant credits");
  const grantForm = h("form", { class: "row admin-grant", onsubmit: (e) => { e.preventDefault(); grantCredits(); } },
    h("label", {}, "Credits", amount), h("label", {}, "Reason", reason), grantButton);
  const historyBody = h("tbody");
  const older = h("button", { type: "button", hidden: true, onclick: () => loadHistory(false) }, "Older entries");
  const history = h("div", { class: "admin-history" },
    h("h3", {}, "Ledger history"),
    h("div", { class: "table-wrap" }, h("table", { class: "admin-table history-table" },
      h("thead", {}, h("tr", {}, ["When", "Kind", "Amount", "Counterparty", "Reference", "Memo"]
        .map((name) => h("th", { scope: "col" }, name)))),
      historyBody)),
    older);
  const account = h("div", { class: "stack", hidden: true }, h("h3", { class: "admin-account-title" }), balance, grantForm, history);
  replaceChildren(s.body, lookup, account);
  let current = null;
  let cursor = null;
  let grantKey = null; // kept until a grant succeeds, so a retried submit cannot grant twice
  for (const input of [amount, reason]) input.addEventListener("input", () => { grantKey = null; });

  async function open(id) {
    if (!id) return;
    current = id;
    grantKey = null;
    account.hidden = false;
    account.querySelector(".admin-account-title").textContent = `User ${id}`;
    await Promise.all([loadBalance(), loadHistory(true)]);
  }

  async function loadBalance() {
    const id = current;
    try {
      const stats = await api.get(`/api/credits/stats/${enc(id)}`);
      if (id !== current) return;
      const items = [["Credits", stats.credits], ["Words left", stats.wordsLeft],
        ["Words used", stats.wordsUsedTotal], ["Credits charged", stats.creditsChargedTotal]];
      replaceChildren(balance, items.map(([label, value]) =>
        h("div", { class: "admin-figure" }, h("dt", {}, label), h("dd", { dataset: { field: label } }, count(value)))));
    } catch (err) {
      if (id !== current) return;
      replaceChildren(balance, h("p", { class: "muted" },
        err.status === 404 ? "No account yet: a grant opens one." : `Balance unavailable: ${errorText(err)}`));
    }
  }

  async function loadHistory(first) {
    const id = current;
    if (first) {
      cursor = null;
      replaceChildren(historyBody);
    }
    const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await api.get(`/api/credits/history/${enc(id)}?${params}`);
      if (id !== current) return;
      const entries = Array.isArray(page.entries) ? page.entries : [];
      for (const e of entries) {
        const amountText = `${e.amount > 0 ? "+" : ""}${e.amount}`;
        historyBody.appendChild(h("tr", {},
          h("td", {}, when(e.createdAt)), h("td", {}, String(e.kind)),
          h("td", { class: `num ${e.amount > 0 ? "amount-in" : "amount-out"}` }, amountText),
          h("td", {}, e.counterparty ? String(e.counterparty.account) : "–"),
          h("td", { class: "mono" }, String(e.reference || "")), h("td", {}, String(e.memo || ""))));
      }
      cursor = page.nextCursor || null;
      older.hidden = !cursor;
      if (first && entries.length === 0) {
        historyBody.appendChild(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No ledger entries.")));
      }
    } catch (err) {
      if (id !== current) return;
      older.hidden = true;
      if (err.status === 404) {
        historyBody.appendChild(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No ledger entries.")));
      } else {
        say(s.notices, "error", `History unavailable: ${errorText(err)}`);
      }
    }
  }

  async function grantCredits() {
    const id = current;
    const credits = Number(amount.value);
    if (!id || !Number.isInteger(credits) || credits < 1) {
      say(s.notices, "error", "Enter a whole number of credits, at least 1.");
      return;
    }
    grantKey = grantKey || `console:${crypto.randomUUID()}`;
    grantButton.disabled = true;
    try {
      const result = await api.post(`/api/credits/grant/${enc(id)}`,
        { credits, reason: reason.value.trim(), idempotencyKey: grantKey });
      say(s.notices, "info", result.applied
        ? `Granted ${credits} credits to ${id}. Balance: ${result.credits}.`
        : `That grant was already applied. Balance: ${result.credits}.`);
      grantKey = null;
      amount.value = "";
      reason.value = "";
      await Promise.all([loadBalance(), loadHistory(true)]);
    } catch (err) {
      say(s.notices, "error", `Grant failed: ${errorText(err)}`);
    } finally {
      grantButton.disabled = false;
    }
  }

  return { el: s.el };
}

// --- tenants ----------------------------------------------------------------------------------

function tenantsSection(api) {
  const s = section("admin-tenants", "Tenants");
  const tbody = h("tbody");
  const tenantId = h("input", { name: "tenantId", required: true, pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off" });
  const name = h("input", { name: "name", required: true, maxlength: "200" });
  const autoReply = h("input", { name: "autoReply", type: "checkbox" });
  const create = h("form", { class: "row admin-create-tenant", onsubmit: (e) => { e.preventDefault(); createTenant(); } },
    h("label", {}, "Tenant id", tenantId), h("label", {}, "Name", name),
    h("label", { class: "inline" }, autoReply, "AI auto-reply"), h("button", { type: "submit" }, "Create tenant"));
  replaceChildren(s.body,
    h("div", { class: "table-wrap" }, h("table", { class: "admin-table tenants-table" },
      h("thead", {}, h("tr", {}, ["Tenant", "Name", "Auto-reply", "Channels", "Credits"]
        .map((label) => h("th", { scope: "col" }, label)))),
      tbody)),
    h("div", { class: "row" }, h("button", { type: "button", onclick: () => load() }, "Refresh tenants")),
    h("h3", {}, "New tenant"), create);

  async function load() {
    try {
      const doc = await api.get("/api/admin/tenants");
      const tenants = Array.isArray(doc && doc.tenants) ? doc.tenants : [];
      replaceChildren(tbody, tenants.length ? tenants.map((t) => h("tr", { dataset: { tenant: String(t.tenantId) } },
        h("th", { scope: "row" }, String(t.tenantId)), h("td", {}, String(t.name || "")),
        h("td", {}, t.autoReply ? "on" : "off"),
        h("td", {}, (Array.isArray(t.channels) ? t.channels : []).map((c) => `${c.channel} ${c.address}`).join(", ") || "–"),
        h("td", { class: "num" }, count(t.credits)))) : h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No tenants.")));
    } catch (err) {
      say(s.notices, "error", `Tenants unavailable: ${errorText(err)}`);
    }
  }

  async function createTenant() {
    try {
      await api.post("/api/admin/tenants",
        { tenantId: tenantId.value.trim(), name: name.value.trim(), autoReply: autoReply.checked });
      say(s.notices, "info", `Tenant ${tenantId.value.trim()} created.`);
      tenantId.value = "";
      name.value = "";
      autoReply.checked = false;
      await load();
    } catch (err) {
      say(s.notices, "error", `Could not create the tenant: ${errorText(err)}`);
    }
  }

  return { el: s.el, load };
}

// --- charts -----------------------------------------------------------------------------------

function chartsSection(api) {
  const s = section("admin-charts", "Last hour",
    h("p", { class: "muted" }, "Per minute, from PostgreSQL: stored messages, credits charged (ledger) and AI tokens (model calls)."));
  const charts = CHARTS.map((c) => {
    const area = h("div", { class: "chart-area" });
    const caption = h("p", { class: "muted chart-caption" });
    const figure = h("figure", { class: "admin-chart", dataset: { metric: c.metric } },
      h("figcaption", {}, c.title), area, caption);
    return { ...c, figure, area, caption };
  });
  replaceChildren(s.body, h("div", { class: "admin-charts" }, charts.map((c) => c.figure)));

  async function refresh() {
    const failures = [];
    await Promise.all(charts.map(async (c) => {
      try {
        const doc = await api.get(`/api/admin/series?metric=${c.metric}&minutes=60&step=60`);
        drawChart(c.area, doc.points, {
          title: c.title, unit: doc.unit, kind: c.kind, stepSeconds: doc.step, integer: c.integer,
        });
        const total = c.metric === "messages"
          ? `${formatNumber(doc.total)} message${doc.total === 1 ? "" : "s"}`
          : `${formatNumber(doc.total)} ${doc.unit}`;
        c.caption.textContent = `${total} in the hour to ${when(doc.end)}`;
      } catch (err) {
        failures.push(`${c.title}: ${errorText(err)}`);
      }
    }));
    if (failures.length) say(s.notices, "error", `Charts unavailable. ${failures.join("; ")}`);
    else for (const old of s.notices.querySelectorAll(".notice-error")) old.remove();
  }
  return { el: s.el, refresh };
}

// --- the whole admin view ---------------------------------------------------------------------

export function mountAdmin(root, ctx) {
  const api = ctx.api;
  const queues = queuesSection(api);
  const dead = deadLettersSection(api, () => queues.refresh());
  const credits = creditsSection(api);
  const tenants = tenantsSection(api);
  const charts = chartsSection(api);
  const nav = h("nav", { class: "admin-nav", "aria-label": "Admin sections" },
    [[queues, "Queues"], [dead, "Dead letters"], [credits, "Credits"], [tenants, "Tenants"], [charts, "Charts"]]
      .map(([part, label]) => h("a", { href: `#${part.el.id}` }, label)));
  replaceChildren(root, h("div", { class: "admin" }, nav,
    h("div", { class: "admin-grid" }, queues.el, charts.el, dead.el, credits.el, tenants.el)));

  // Refreshes stop by the returned function, or by themselves once `root` has left the page.
  let attached = false;
  const alive = () => {
    attached = attached || root.isConnected;
    return root.isConnected || !attached;
  };
  // Not while the browser tab or the console's admin tab is hidden.
  const visible = () => !document.hidden && !root.closest("[hidden]");
  const stops = [
    every(QUEUES_EVERY_MS, queues.refresh, alive, visible),
    every(CHARTS_EVERY_MS, charts.refresh, alive, visible),
  ];
  dead.load();
  tenants.load();
  return () => {
    for (const stop of stops) stop();
  };
}
