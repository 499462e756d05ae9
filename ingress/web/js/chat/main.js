// The chat page: sign in (dev token or pasted JWT), then one ChatRoom on one socket.

import { createApi } from "../shared/api.js";
import { notice, show } from "../shared/dom.js";
import { devTokensEnabled, mintDevToken, session } from "../shared/session.js";
import { createSocket } from "../shared/socket.js";
import { BuyDialog, TipDialog } from "./billing.js";
import { Balance, CreditNotices } from "./credits.js";
import { ChatRoom } from "./room.js";

const api = createApi(() => session.token());
const $ = (id) => document.getElementById(id);
const pageNotices = $("page-notices");

async function showSignIn() {
  show($("signin"));
  show($("chat"), false);
  show($("balance"), false);
  show($("sign-out"), false);
  show($("who"), false);
  show($("connection"), false);
  const devForm = $("dev-form");
  show(devForm, await devTokensEnabled(api));
  devForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const userId = $("dev-user-id").value.trim();
    const name = $("dev-name").value.trim();
    if (!userId) return;
    try {
      await mintDevToken(api, { userId, name: name || undefined });
      window.location.reload();
    } catch (err) {
      notice(pageNotices, "error", `Could not mint a dev token: ${err.message}`);
    }
  });
  $("jwt-form").addEventListener("submit", (e) => {
    e.preventDefault();
    try {
      session.signIn($("jwt").value);
      window.location.reload();
    } catch (err) {
      notice(pageNotices, "error", err.message);
    }
  });
  (devForm.hidden ? $("jwt") : $("dev-user-id")).focus();
}

function showChat(identity) {
  show($("signin"), false);
  show($("chat"));
  show($("balance"));
  show($("sign-out"));
  const who = $("who");
  who.textContent = `${identity.name} (${identity.userId})`;
  show(who);
  $("sign-out").addEventListener("click", () => {
    session.signOut();
    window.location.reload();
  });

  const socket = createSocket(session.token());
  const buy = new BuyDialog(api);
  const credits = new CreditNotices($("composer-notices"), () => buy.open());
  const balance = new Balance({
    api,
    userId: identity.userId,
    creditsEl: $("credits"),
    wordsEl: $("words-left"),
    onError: (text) => notice(pageNotices, "error", text),
  });
  $("buy-credits").addEventListener("click", () => buy.open());
  let room = null;
  const tip = new TipDialog({
    socket,
    roomId: () => (room ? room.roomId : null),
    selfId: identity.userId,
    onSent: (text) => credits.info(text, "info", "tip-pending"),
  });
  $("tip-open").addEventListener("click", () => tip.open());
  room = new ChatRoom({ socket, api, identity, balance, credits, pageNotices, openTip: (userId) => tip.open(userId) });
  balance.refresh();
  const initialRoom = new URLSearchParams(window.location.search).get("room");
  if (initialRoom) {
    $("room-id").value = initialRoom;
    room.join(initialRoom);
  } else {
    $("room-id").focus();
  }
}

const identity = session.identity();
if (identity) showChat(identity);
else showSignIn();
