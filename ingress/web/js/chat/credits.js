// Credits in the header (balance and words left, always visible) and the credit notices that
// go next to the composer: creditWarning, creditError, quotaExceeded.

import { h, notice } from "../shared/dom.js";

export class Balance {
  /** @param {{api, userId: string, creditsEl: HTMLElement, wordsEl: HTMLElement, onError: (msg) => void}} o */
  constructor({ api, userId, creditsEl, wordsEl, onError = () => {} }) {
    this.api = api;
    this.userId = userId;
    this.creditsEl = creditsEl;
    this.wordsEl = wordsEl;
    this.onError = onError;
    this.timer = null;
    this.generation = 0;
  }

  show(credits, wordsLeft) {
    if (typeof credits === "number") this.creditsEl.textContent = String(credits);
    if (typeof wordsLeft === "number") this.wordsEl.textContent = String(wordsLeft);
  }

  /** Read the balance from the server; a 404 means no account yet: plainly 0. */
  async refresh() {
    const generation = ++this.generation;
    try {
      const stats = await this.api.get(`/api/credits/stats/${encodeURIComponent(this.userId)}`);
      if (generation === this.generation) this.show(stats.credits, stats.wordsLeft);
    } catch (err) {
      if (generation !== this.generation) return;
      if (err.status === 404) this.show(0, 0);
      else this.onError(`Could not read your balance: ${err.message}`);
    }
  }

  /** Refresh shortly: several events in a row make one request. */
  refreshSoon(delayMs = 150) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delayMs);
  }
}

function rechargeLink(url) {
  // Only a real page is linked; the default RECHARGE_URL may not exist on this server.
  return typeof url === "string" && /^https?:\/\//i.test(url)
    ? h("a", { href: url, rel: "noopener", target: "_blank" }, "Recharge")
    : null;
}

function resetTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? "at the next reset"
    : `at ${date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })} (your time)`;
}

const INFO_TTL_MS = 15000;
const LIMIT_NAMES = { messages: "messages", ai_tokens: "AI tokens" };

/** The plain-language notices by the composer. `openBuy` opens the "Buy credits" dialog. */
export class CreditNotices {
  constructor(container, openBuy) {
    this.container = container;
    this.openBuy = openBuy;
  }

  _buyButton() {
    return h("button", { type: "button", class: "primary", onclick: () => this.openBuy() }, "Buy credits");
  }

  _replace(kind, type, text, ...actions) {
    this.remove(type);
    const el = notice(this.container, kind, text, ...actions);
    el.dataset.type = type;
    return el;
  }

  warning(event) {
    const text =
      typeof event.message === "string" && event.message
        ? event.message
        : `Low balance: ${event.credits} credit(s) and ${event.wordsLeft} words left.`;
    return this._replace("warn", "credit-warning", text, this._buyButton(), rechargeLink(event.rechargeUrl));
  }

  error(event) {
    const text =
      typeof event.message === "string" && event.message ? event.message : "Not enough credits: nothing was sent.";
    return this._replace("error", "credit-error", text, this._buyButton(), rechargeLink(event.rechargeUrl));
  }

  quota(event) {
    const what = LIMIT_NAMES[event.kind] || String(event.kind || "quota");
    const text =
      `Daily limit reached: your ${event.plan || "current"} plan allows ${event.limit} ${what} a day ` +
      `and you have used ${event.used}. It resets ${resetTime(event.resetsAt)}. Nothing was charged.`;
    return this._replace("error", "quota", text);
  }

  /** A passing notice; one of a `type` replaces the last one, and plain info fades after a while. */
  info(text, kind = "info", type = null) {
    if (type) this.remove(type);
    const el = notice(this.container, kind, text);
    if (type) el.dataset.type = type;
    if (kind === "info") setTimeout(() => el.remove(), INFO_TTL_MS);
    return el;
  }

  remove(type) {
    for (const old of this.container.querySelectorAll(`[data-type="${type}"]`)) old.remove();
  }

  clearErrors() {
    for (const old of this.container.querySelectorAll('[data-type="credit-error"], [data-type="quota"]')) old.remove();
  }
}
