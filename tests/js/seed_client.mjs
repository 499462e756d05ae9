// Code written for the original Node Socket.IO server, run unchanged against Gatekeeper.
//
// Modelled on the original system's test client: connect with `auth: {token}`,
// joinRoom with spoofed userId/username, sendMessage without an ack callback,
// listen for newMessage / creditError / creditWarning. On top of that it checks
// an ack'd sendMessage, the `connect_error` of a bad token and the `error`
// event of an invalid payload.
//
//   TOKEN_A=... TOKEN_B=... ROOM=... node tests/js/seed_client.mjs <url1> <url2>
//
// Prints one JSON line with what was observed; exit 0 on success, 1 on a
// failed check, 2 on the hard timeout.
import { io } from "socket.io-client";

const HARD_TIMEOUT_MS = 20_000;
const STEP_TIMEOUT_MS = 10_000;
const TEXT_PLAIN = "Hello from test client!";
const TEXT_ACKED = "Hello from test client, with an ack!";
const SEED_TOKEN = "test_jwt_token"; // the seed's placeholder token: not a valid JWT here

const [url1, url2] = process.argv.slice(2);
const { TOKEN_A, TOKEN_B, ROOM } = process.env;

const observed = { ok: false };
const sockets = [];

function finish(code, error) {
  if (error) observed.error = error;
  observed.ok = code === 0;
  for (const s of sockets) s.disconnect();
  process.stdout.write(JSON.stringify(observed) + "\n");
  if (error) process.stderr.write(`seed_client: FAILED: ${error}\n`);
  process.exit(code);
}

setTimeout(() => finish(2, `hard timeout after ${HARD_TIMEOUT_MS} ms`), HARD_TIMEOUT_MS);

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function claims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

// Resolves with the first `event` payload (already received or future) matching `predicate`.
function recorder(socket, events) {
  const seen = Object.fromEntries(events.map((e) => [e, []]));
  const waiters = [];
  for (const event of events) {
    socket.on(event, (data) => {
      seen[event].push(data);
      for (const w of waiters.filter((w) => w.event === event && w.predicate(data))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(data);
      }
    });
  }
  const waitFor = (event, predicate = () => true, what = event) => {
    const found = seen[event].find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = { event, predicate, resolve };
      waiters.push(waiter);
      setTimeout(() => {
        if (waiters.includes(waiter)) reject(new CheckFailed(`no ${what} within ${STEP_TIMEOUT_MS} ms`));
      }, STEP_TIMEOUT_MS);
    });
  };
  return { seen, waitFor };
}

const EVENTS = ["connect", "roomJoined", "newMessage", "creditError", "creditWarning", "error", "disconnect"];

// Exactly the seed's client, with the URL, token and room parameterised.
function seedClient(name, url, token, extraOptions = {}) {
  const socket = io(url, { auth: { token }, ...extraOptions }); // default transports: polling, then websocket
  sockets.push(socket);
  const rec = recorder(socket, EVENTS);
  const transport = { openedOver: null, connectedOver: null, upgradedTo: null };
  const engine = socket.io.engine; // created synchronously by io(); its handshake has not started yet
  engine.once("open", () => {
    transport.openedOver = engine.transport.name;
  });
  engine.once("upgrade", (t) => {
    transport.upgradedTo = t.name;
  });
  socket.on("connect", () => {
    transport.connectedOver ??= socket.io.engine.transport.name;
    socket.emit("joinRoom", { roomId: ROOM, roomType: "group", userId: "spoofed", username: "Spoofed" });
  });
  socket.on("newMessage", (data) => console.error(`[${name}] New message:`, JSON.stringify(data)));
  socket.on("creditError", (data) => console.error(`[${name}] Credit error:`, JSON.stringify(data)));
  socket.on("creditWarning", (data) => console.error(`[${name}] Credit warning:`, JSON.stringify(data)));
  socket.on("error", (data) => console.error(`[${name}] error:`, JSON.stringify(data)));
  socket.on("connect_error", (err) => console.error(`[${name}] connect_error:`, err.message));
  return { socket, rec, transport };
}

function badTokenClient(url) {
  const socket = io(url, { auth: { token: SEED_TOKEN }, reconnection: false });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.on("connect", () => reject(new CheckFailed("a client with a bad token was allowed to connect")));
    socket.on("connect_error", (err) => {
      socket.disconnect();
      resolve({ message: err.message, data: err.data ?? null, active: socket.active });
    });
    setTimeout(() => reject(new CheckFailed(`bad token: no connect_error within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
}

function ackOf(socket, event, payload) {
  return new Promise((resolve, reject) => {
    socket.timeout(STEP_TIMEOUT_MS).emit(event, payload, (err, ack) => {
      if (err) reject(new CheckFailed(`no ack for ${event} within ${STEP_TIMEOUT_MS} ms`));
      else resolve(ack);
    });
  });
}

function summary(m) {
  const { id, messageId, roomId, userId, username, content, message, words, kind } = m;
  return { id, messageId, roomId, userId, username, content, message, words, kind };
}

async function main() {
  check(url1 && url2, "usage: node seed_client.mjs <url1> <url2> (env TOKEN_A, TOKEN_B, ROOM)");
  check(TOKEN_A && TOKEN_B && ROOM, "env TOKEN_A, TOKEN_B and ROOM are required");
  const subA = claims(TOKEN_A).sub;
  const nameA = claims(TOKEN_A).name ?? subA;

  observed.unauthorized = await badTokenClient(url1);
  check(
    observed.unauthorized.message === "unauthorized",
    `bad token: connect_error message ${JSON.stringify(observed.unauthorized.message)}, expected "unauthorized"`,
  );

  const a = seedClient("A", url1, TOKEN_A);
  const b = seedClient("B", url2, TOKEN_B);
  // In practice the default upgrade finishes before `connect`, so events ride the websocket. C (B's user on a
  // second socket) stays on long-polling, as a browser behind a proxy that blocks websockets would.
  const c = seedClient("C", url2, TOKEN_B, { transports: ["polling"] });
  observed.transports = { a: a.transport, b: b.transport, c: c.transport };
  const byRoom = (d) => d && d.roomId === ROOM;
  const joined = await Promise.all(
    [a, b, c].map((x, i) => x.rec.waitFor("roomJoined", byRoom, `roomJoined for ${"ABC"[i]}`)),
  );
  observed.roomJoined = Object.fromEntries(
    joined.map((j, i) => ["abc"[i], { roomType: j.roomType, memberCount: j.memberCount, history: j.history?.length }]),
  );
  check(joined.every((j) => j.roomType === "group"), "roomJoined.roomType is not 'group'");
  for (const [name, t] of Object.entries(observed.transports)) {
    check(t.openedOver === "polling", `${name} did not open its connection over long-polling (${t.openedOver})`);
  }

  // The seed's send: no ack callback, spoofed userId/username.
  a.socket.emit("sendMessage", { roomId: ROOM, userId: "spoofed", message: TEXT_PLAIN, username: "Test User" });
  // The same with an ack callback, as newer clients do.
  const ack = await new Promise((resolve, reject) => {
    a.socket.emit("sendMessage", { roomId: ROOM, userId: "spoofed", message: TEXT_ACKED, username: "Test User" }, resolve);
    setTimeout(() => reject(new CheckFailed(`no ack for sendMessage within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  observed.ack = ack;
  check(ack && ack.status === "accepted" && typeof ack.messageId === "string", `sendMessage ack: ${JSON.stringify(ack)}`);

  const isText = (text) => (m) => byRoom(m) && (m.content === text || m.message === text);
  const [plain, acked, plainC, ackedC] = await Promise.all([
    b.rec.waitFor("newMessage", isText(TEXT_PLAIN), "newMessage on B for the message sent without an ack"),
    b.rec.waitFor("newMessage", isText(TEXT_ACKED), "newMessage on B for the message sent with an ack"),
    c.rec.waitFor("newMessage", isText(TEXT_PLAIN), "newMessage on C (long-polling) for the message without an ack"),
    c.rec.waitFor("newMessage", isText(TEXT_ACKED), "newMessage on C (long-polling) for the message with an ack"),
  ]);
  observed.received = [summary(plain), summary(acked)];
  observed.receivedOverPolling = [plainC.messageId, ackedC.messageId];
  check(
    plainC.messageId === plain.messageId && ackedC.messageId === acked.messageId,
    "B and C were delivered different message ids",
  );
  for (const [m, text] of [[plain, TEXT_PLAIN], [acked, TEXT_ACKED]]) {
    check(m.content === text && m.message === text, `newMessage text: ${JSON.stringify(summary(m))}`);
    check(typeof m.id === "string" && m.id && m.id === m.messageId, `newMessage id/messageId: ${JSON.stringify(summary(m))}`);
    check(m.userId === subA, `newMessage.userId is ${JSON.stringify(m.userId)}, expected the token's sub ${subA}`);
    check(m.username === nameA, `newMessage.username is ${JSON.stringify(m.username)}, expected ${nameA}`);
  }
  check(acked.messageId === ack.messageId, `acked messageId ${ack.messageId} != delivered ${acked.messageId}`);
  check(plain.messageId !== acked.messageId, "both messages were delivered with the same id");

  // An invalid payload without an ack: the client is told through an `error` event...
  a.socket.emit("sendMessage", { roomId: ROOM, userId: "spoofed", message: 12345, username: "Test User" });
  const error = await a.rec.waitFor("error", (e) => e && e.event === "sendMessage", "error event for a bad sendMessage");
  observed.badRequest = error;
  check(error.code === "bad_request", `error event code ${JSON.stringify(error.code)}, expected "bad_request"`);
  // ...and stays connected: a round trip on the same socket still works (rejected in the ack, nothing charged).
  const rejected = await ackOf(a.socket, "sendMessage", { roomId: ROOM, message: "" });
  observed.badRequestAck = rejected;
  check(rejected?.status === "rejected" && rejected?.error?.code === "bad_request", `bad payload ack: ${JSON.stringify(rejected)}`);
  check(a.socket.connected && b.socket.connected && c.socket.connected, "a client was disconnected");
  check(a.rec.seen.error.length === 1, `expected exactly one error event, got ${JSON.stringify(a.rec.seen.error)}`);
  check([a, b, c].every((x) => x.rec.seen.disconnect.length === 0), "a client saw a disconnect");
  observed.stillConnected = true;

  check(a.rec.seen.creditError.length === 0, `creditError: ${JSON.stringify(a.rec.seen.creditError)}`);
  observed.creditWarnings = a.rec.seen.creditWarning.length;

  check(c.socket.io.engine.transport.name === "polling", "C left long-polling although told to stay on it");
  // A and B should have left long-polling for websocket by now (the default upgrade).
  for (const [name, c] of [["a", a], ["b", b]]) {
    if (c.socket.io.engine.transport.name !== "websocket") {
      await new Promise((resolve) => {
        c.socket.io.engine.once("upgrade", resolve);
        setTimeout(resolve, 3000);
      });
    }
    const now = c.socket.io.engine.transport.name;
    check(now === "websocket", `${name} was not upgraded from long-polling to websocket (still on ${now})`);
  }
}

main().then(
  () => finish(0),
  (err) => finish(1, err instanceof CheckFailed ? err.message : String(err?.stack ?? err)),
);
