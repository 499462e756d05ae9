// Tiny DOM helpers. Text always goes in as textContent / text nodes, never as markup.

/**
 * h("button", {class: "primary", onclick: fn, dataset: {id: "1"}, disabled: true}, "Send", child, [more])
 * Strings and numbers become text nodes; null, undefined and false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class" || key === "className") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const qs = (selector, root = document) => root.querySelector(selector);

/** Show `el` or hide it (the `hidden` attribute). */
export function show(el, visible = true) {
  el.hidden = !visible;
}

/** "14:03" for today, otherwise a short date and time, in the user's locale. */
export function formatTime(ms) {
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/**
 * A notice in `container` (an element with role="status" or "alert"): kind is info|warn|error.
 * Returns the element, so callers can remove it; `actions` are extra nodes (buttons, links).
 */
export function notice(container, kind, text, ...actions) {
  const el = h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { class: "notice-text" }, text),
    ...actions,
    h("button", { class: "notice-close", type: "button", "aria-label": "Dismiss", onclick: () => el.remove() }, "×"),
  );
  container.appendChild(el);
  return el;
}

const NAMED = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

/**
 * Server text is sanitized to inert HTML (``&lt;`` for "<"); turn the entities back into the
 * characters they stand for, for textContent. The result is never parsed as markup.
 */
export function decodeEntities(text) {
  if (typeof text !== "string") return "";
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, body) => {
    if (body[0] === "#") {
      const code = body[1] === "x" || body[1] === "X" ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    const named = NAMED[body.toLowerCase()];
    return named === undefined ? whole : named;
  });
}
