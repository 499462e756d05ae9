// "Buy credits" (Stripe Checkout through POST /api/billing/checkout) and the tip dialog.

import { h, notice } from "../shared/dom.js";
import { call, newId } from "../shared/socket.js";

function money(amount, currency) {
  try {
    return new Intl.NumberFormat([], { style: "currency", currency: String(currency).toUpperCase() }).format(amount / 100);
  } catch {
    return `${amount} ${currency}`;
  }
}

export class BuyDialog {
  constructor(api) {
    this.api = api;
    this.dialog = document.getElementById("buy-dialog");
    this.list = document.getElementById("packs");
    this.notices = document.getElementById("buy-notices");
    this.submit = document.getElementById("buy-submit");
    document.getElementById("buy-cancel").addEventListener("click", () => this.dialog.close());
    document.getElementById("buy-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.checkout();
    });
  }

  async open() {
    this.notices.replaceChildren();
    this.list.replaceChildren(h("li", { class: "muted" }, "Loading packs…"));
    this.submit.disabled = true;
    if (!this.dialog.open) this.dialog.showModal();
    try {
      const { packs } = await this.api.get("/api/billing/packs");
      this.list.replaceChildren(
        ...(Array.isArray(packs) ? packs : []).map((pack, i) =>
          h(
            "li",
            {},
            h(
              "label",
              {},
              h("input", { type: "radio", name: "pack", value: pack.id, checked: i === 0 }),
              `${pack.credits} credits — ${money(pack.amount, pack.currency)}`,
            ),
          ),
        ),
      );
      this.submit.disabled = !packs || !packs.length;
      if (!packs || !packs.length) notice(this.notices, "info", "No credit packs are on sale.");
    } catch (err) {
      this.list.replaceChildren();
      notice(this.notices, "error", `Could not load the packs: ${err.message}`);
    }
  }

  async checkout() {
    const chosen = this.list.querySelector('input[name="pack"]:checked');
    if (!chosen) return;
    this.submit.disabled = true;
    this.notices.replaceChildren();
    try {
      const session = await this.api.post("/api/billing/checkout", { pack: chosen.value });
      if (!session || typeof session.url !== "string" || !/^https?:\/\//i.test(session.url)) {
        throw new Error("the payment provider did not return a checkout page");
      }
      window.location.assign(session.url);
    } catch (err) {
      const text =
        err.status === 503
          ? "Buying credits is not available on this server: payments are not configured."
          : `Checkout failed: ${err.message}`;
      notice(this.notices, "error", text);
      this.submit.disabled = false;
    }
  }
}

export class TipDialog {
  /** @param {{socket, roomId: () => string|null, selfId: string, onSent: (text) => void}} o */
  constructor({ socket, roomId, selfId, onSent }) {
    this.socket = socket;
    this.roomId = roomId;
    this.selfId = selfId;
    this.onSent = onSent;
    this.dialog = document.getElementById("tip-dialog");
    this.to = document.getElementById("tip-to");
    this.credits = document.getElementById("tip-credits");
    this.notices = document.getElementById("tip-notices");
    this.submit = document.getElementById("tip-submit");
    this.pending = new Set(); // clientTipIds this page sent
    document.getElementById("tip-cancel").addEventListener("click", () => this.dialog.close());
    document.getElementById("tip-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
  }

  open(toUserId = "") {
    this.notices.replaceChildren();
    this.to.value = toUserId;
    this.credits.value = "1";
    this.submit.disabled = false;
    if (!this.dialog.open) this.dialog.showModal();
    (toUserId ? this.credits : this.to).focus();
  }

  async send() {
    this.notices.replaceChildren();
    const toUserId = this.to.value.trim();
    const credits = Number(this.credits.value);
    if (!toUserId) return notice(this.notices, "error", "Who is the tip for? Enter their user id.");
    if (toUserId === this.selfId) return notice(this.notices, "error", "You cannot tip yourself.");
    if (!Number.isInteger(credits) || credits < 1) return notice(this.notices, "error", "Credits must be a whole number, 1 or more.");
    const payload = { toUserId, credits, clientTipId: newId("tip") };
    const room = this.roomId();
    if (room && !room.startsWith("conv:")) payload.roomId = room;
    this.submit.disabled = true;
    const ack = await call(this.socket, "sendTip", payload);
    this.submit.disabled = false;
    if (ack.status === "accepted") {
      this.pending.add(payload.clientTipId);
      this.dialog.close();
      this.onSent(`Tip of ${credits} credit(s) to ${toUserId} is on its way…`);
    } else {
      const error = ack.error || {};
      notice(this.notices, "error", `Tip not sent: ${error.message || error.code || "rejected"}`);
    }
  }
}
