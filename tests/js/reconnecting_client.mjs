// An unchanged socket.io-client v4 app that stays in its room across server restarts: it joins
// ROOM on every `connect` (the first and each automatic reconnection) and prints every event
// as one JSON line: {"event", "data", "t"}.
//
//   TOKEN=... ROOM=... [TRANSPORTS=polling] node tests/js/reconnecting_client.mjs <url>
//
// Reads commands from stdin, one JSON object a line:
//   {"send": {"roomId", "message", "clientMessageId"}}  emits sendMessage with an ack, printed as "ack"
//   {"quit": true}                                       disconnects and exits 0 (so does stdin closing)
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [url] = process.argv.slice(2);
const { TOKEN, ROOM, TRANSPORTS } = process.env;
const HARD_TIMEOUT_MS = 120_000;

function print(event, data = null) {
  process.stdout.write(JSON.stringify({ event, data, t: Date.now() }) + "\n");
}

// Default options (polling, then websocket; reconnection on), or only the TRANSPORTS given.
const socket = io(url, { auth: { token: TOKEN }, ...(TRANSPORTS ? { transports: TRANSPORTS.split(",") } : {}) });

function quit(code) {
  socket.disconnect();
  process.exit(code);
}

setTimeout(() => {
  print("hardTimeout", { ms: HARD_TIMEOUT_MS });
  quit(2);
}, HARD_TIMEOUT_MS).unref();

socket.on("connect", () => {
  print("connect", { id: socket.id, transport: socket.io.engine.transport.name });
  socket.emit("joinRoom", { roomId: ROOM });
});
socket.on("disconnect", (reason) => print("disconnect", { reason, active: socket.active }));
socket.on("connect_error", (err) => print("connect_error", { message: err.message }));
socket.io.on("reconnect_attempt", (attempt) => print("reconnect_attempt", { attempt }));
for (const event of ["roomJoined", "newMessage", "serverShutdown", "error", "creditError", "userJoined", "userLeft"]) {
  socket.on(event, (data) => print(event, data));
}

const commands = createInterface({ input: process.stdin });
commands.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.send) {
    socket.emit("sendMessage", command.send, (ack) => print("ack", ack));
  } else if (command.quit) {
    quit(0);
  }
});
commands.on("close", () => quit(0));
