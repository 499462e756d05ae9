// The signed-in user: a JWT kept in sessionStorage (per tab), its claims decoded for display only
// (the server verifies every request), dev-token minting, and sign-out.

const KEY = "gatekeeper.token";

function decodePart(part) {
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** The claims of a JWT, or null when it is not one. Not verified: for display only. */
export function decodeClaims(token) {
  if (typeof token !== "string") return null;
  const parts = token.trim().split(".");
  if (parts.length !== 3) return null;
  try {
    const claims = decodePart(parts[1]);
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** {userId, name, role, tenant, expiresAt} from a token's claims, or null. */
export function identityOf(token) {
  const claims = decodeClaims(token);
  if (!claims || typeof claims.sub !== "string" || !claims.sub) return null;
  return {
    userId: claims.sub,
    name: typeof claims.name === "string" && claims.name ? claims.name : claims.sub,
    role: typeof claims.role === "string" ? claims.role : null,
    tenant: typeof claims.tenant === "string" ? claims.tenant : null,
    expiresAt: typeof claims.exp === "number" ? claims.exp : null,
  };
}

function isExpired(identity) {
  return identity.expiresAt !== null && identity.expiresAt * 1000 <= Date.now();
}

export const session = {
  /** The stored token, or null (an expired or unreadable one is dropped). */
  token() {
    const token = sessionStorage.getItem(KEY);
    if (!token) return null;
    const identity = identityOf(token);
    if (!identity || isExpired(identity)) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return token;
  },
  identity() {
    const token = this.token();
    return token ? identityOf(token) : null;
  },
  /** Store a pasted or minted token; throws with a plain message when it is not a usable JWT. */
  signIn(token) {
    const trimmed = String(token || "").trim();
    const identity = identityOf(trimmed);
    if (!identity) throw new Error("That is not a JWT with a user id (sub).");
    if (isExpired(identity)) throw new Error("That token has expired.");
    sessionStorage.setItem(KEY, trimmed);
    return identity;
  },
  signOut() {
    sessionStorage.removeItem(KEY);
  },
};

/** Whether this server mints dev tokens (ALLOW_DEV_TOKENS). */
export async function devTokensEnabled(api) {
  try {
    const body = await api.get("/api/dev/token");
    return Boolean(body && body.enabled);
  } catch {
    return false;
  }
}

/** Mint a dev token and sign in with it: {userId, name?, role?: user|operator|admin, tenant?}. */
export async function mintDevToken(api, { userId, name, role = "user", tenant } = {}) {
  const body = { userId, role };
  if (name) body.name = name;
  if (tenant) body.tenant = tenant;
  const minted = await api.post("/api/dev/token", body, { auth: false });
  return session.signIn(minted.token);
}
