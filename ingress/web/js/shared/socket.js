// The Socket.IO connection, made with the same socket.io-client third-party clients use (the
// vendored browser build). It reconnects by itself; callers re-join rooms on "connect".

import { io } from "../../vendor/socket.io.esm.min.js";

/** A connected-or-connecting socket to this page's own server, authenticated with `token`. */
export function createSocket(token, options = {}) {
  return io({
    auth: { token },
    transports: ["websocket", "polling"],
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
    ...options,
  });
}

/**
 * Emit with an acknowledgement: resolves with the server's ack, or with
 * {status: "rejected", error: {code: "timeout"|"disconnected", message}} when none comes.
 */
export async function call(socket, event, payload, timeoutMs = 10000) {
  if (!socket.connected) {
    return { status: "rejected", error: { code: "disconnected", message: "not connected; retry when reconnected" } };
  }
  try {
    const ack = await socket.timeout(timeoutMs).emitWithAck(event, payload);
    return ack && typeof ack === "object" ? ack : { status: "rejected", error: { code: "bad_ack", message: "no answer" } };
  } catch {
    return { status: "rejected", error: { code: "timeout", message: `no answer to ${event} within ${timeoutMs / 1000} s` } };
  }
}

/** A random id for clientMessageId / clientTipId (works outside secure contexts too). */
export function newId(prefix = "c") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
