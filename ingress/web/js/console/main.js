// The console shell: sign-in (dev token or pasted JWT), role detection, the tab bar, and the
// sections it mounts: the live inbox for a tenant's operators (and admins, who pick a tenant),
// the admin sections for admins (js/console/admin.js, loaded on demand).

import { createApi } from "../shared/api.js";
import { h, notice, qs, replaceChildren, show } from "../shared/dom.js";
import { devTokensEnabled, mintDevToken, session } from "../shared/session.js";
import { createSocket } from "../shared/socket.js";
import { mountOperator } from "./operator.js";

const api = createApi(() => session.token());
const el = {
  notices: qs("#page-notices"),
  signin: qs("#signin"),
  devForm: qs("#dev-form"),
  devRole: qs("#dev-role"),
  devTenantLabel: qs("#dev-tenant-label"),
  jwtForm: qs("#jwt-form"),
  console: qs("#console"),
  tabs: qs("#tabs"),
  panels: qs("#panels"),
  who: qs("#who"),
  connection: qs("#connection"),
  signOut: qs("#sign-out"),
};

let socket = null;
let unmounts = [];

function say(kind, text) {
  return notice(el.notices, kind, text);
}

function setConnection(state, text) {
  el.connection.textContent = text;
  el.connection.className = `connection ${state}`;
  show(el.connection, true);
}

// --- sign-in --------------------------------------------------------------------------

function showSignIn() {
  show(el.console, false);
  show(el.who, false);
  show(el.signOut, false);
  show(el.connection, false);
  show(el.signin, true);
  devTokensEnabled(api).then((enabled) => show(el.devForm, enabled));
}

el.devRole.addEventListener("change", () => show(el.devTenantLabel, el.devRole.value === "operator"));

el.devForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(el.devForm);
  const role = String(data.get("role"));
  try {
    await mintDevToken(api, {
      userId: String(data.get("userId")).trim(),
      name: String(data.get("name") || "").trim() || undefined,
      role,
      tenant: role === "operator" ? String(data.get("tenant") || "").trim() || undefined : undefined,
    });
    start();
  } catch (err) {
    say("error", `Could not mint a token: ${err.message}`);
  }
});

el.jwtForm.addEventListener("submit", (event) => {
  event.preventDefault();
  try {
    session.signIn(String(new FormData(el.jwtForm).get("token")));
    el.jwtForm.reset();
    start();
  } catch (err) {
    say("error", err.message);
  }
});

el.signOut.addEventListener("click", () => {
  stop();
  session.signOut();
  showSignIn();
});

// --- the signed-in console --------------------------------------------------------------

function stop() {
  for (const unmount of unmounts) unmount();
  unmounts = [];
  if (socket) {
    socket.removeAllListeners();
    socket.disconnect();
    socket = null;
  }
  replaceChildren(el.tabs);
  replaceChildren(el.panels);
}

/** A tab bar whose panels are mounted the first time they are shown. */
function tabBar(sections) {
  const buttons = [];
  const panels = [];
  const mounted = new Set();

  function select(index, focus = false) {
    sections.forEach((section, i) => {
      const active = i === index;
      buttons[i].setAttribute("aria-selected", String(active));
      buttons[i].tabIndex = active ? 0 : -1;
      show(panels[i], active);
      if (active && !mounted.has(i)) {
        mounted.add(i);
        Promise.resolve(section.mount(panels[i])).catch((err) => say("error", `${section.label}: ${err.message}`));
      }
    });
    if (focus) buttons[index].focus();
  }

  sections.forEach((section, i) => {
    const id = `tab-${section.id}`;
    const button = h("button", {
      type: "button", role: "tab", id, "aria-controls": `panel-${section.id}`, dataset: { tab: section.id },
      onclick: () => select(i),
      onkeydown: (event) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (step) select((i + step + sections.length) % sections.length, true);
      },
    }, section.label);
    const panel = h("section", { role: "tabpanel", id: `panel-${section.id}`, "aria-labelledby": id, class: "panel" });
    buttons.push(button);
    panels.push(panel);
  });
  replaceChildren(el.tabs, buttons);
  replaceChildren(el.panels, panels);
  show(el.tabs, sections.length > 1);
  select(0);
}

/** Admins read any tenant's inbox: a tenant picker above it. */
async function mountAdminInbox(root, ctx) {
  const select = h("select", { id: "inbox-tenant" }, h("option", { value: "" }, "Choose a tenant…"));
  const body = h("div", { class: "inbox-host" });
  replaceChildren(root, h("div", { class: "row tenant-picker" }, h("label", {}, "Inbox of tenant", select)), body);
  let unmount = null;
  unmounts.push(() => unmount && unmount());
  select.addEventListener("change", () => {
    if (unmount) unmount();
    unmount = null;
    replaceChildren(body);
    if (select.value) unmount = mountOperator(body, { ...ctx, tenant: select.value });
  });
  try {
    const { tenants } = await api.get("/api/admin/tenants");
    for (const tenant of tenants) select.appendChild(h("option", { value: tenant.tenantId }, `${tenant.name} (${tenant.tenantId})`));
  } catch (err) {
    say("error", `Could not list the tenants: ${err.message}`);
  }
}

async function mountAdminSections(root, ctx) {
  root.appendChild(h("p", { class: "muted" }, "Loading the admin console…"));
  let module;
  try {
    module = await import("./admin.js");
  } catch (err) {
    replaceChildren(root, h("p", { class: "notice notice-error", role: "alert" }, `The admin console is not available: ${err.message}`));
    return;
  }
  replaceChildren(root);
  const unmount = await module.mountAdmin(root, ctx);
  if (typeof unmount === "function") unmounts.push(unmount);
}

function start() {
  stop();
  const identity = session.identity();
  if (!identity) return showSignIn();
  if (identity.role !== "admin" && !(identity.role === "operator" && identity.tenant)) {
    session.signOut();
    say("error", `${identity.name} is not an operator or an admin: the console needs a token with role operator (and a tenant) or admin.`);
    return showSignIn();
  }
  show(el.signin, false);
  el.who.textContent = identity.role === "admin" ? `${identity.name} · admin` : `${identity.name} · operator of ${identity.tenant}`;
  show(el.who, true);
  show(el.signOut, true);
  show(el.console, true);

  socket = createSocket(session.token());
  setConnection("offline", "Connecting…");
  socket.on("connect", () => setConnection("online", "Connected"));
  socket.on("disconnect", () => setConnection("offline", "Reconnecting…"));
  socket.on("connect_error", (err) => {
    if (err && err.message === "unauthorized") {
      stop();
      session.signOut();
      say("error", "The server refused this token (expired or not signed by it). Sign in again.");
      showSignIn();
    } else {
      setConnection("offline", "Cannot reach the server; retrying…");
    }
  });

  const ctx = { api, session, socket, identity };
  const sections = [];
  if (identity.role === "operator") {
    sections.push({ id: "inbox", label: "Inbox", mount: (root) => unmounts.push(mountOperator(root, ctx)) });
  } else {
    sections.push({ id: "admin", label: "Admin", mount: (root) => mountAdminSections(root, ctx) });
    sections.push({ id: "inbox", label: "Inbox", mount: (root) => mountAdminInbox(root, ctx) });
  }
  tabBar(sections);
}

start();
