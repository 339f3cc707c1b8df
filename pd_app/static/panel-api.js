// The panel's two connections: to Pipedrive's page around it (the app extensions SDK) and to our /api/v1 proxy.
// No cookies anywhere: every proxy call carries the SDK's signed JWT as `Authorization: Bearer`.

const TOKEN_MARGIN_MS = 60000; // renew a JWT this long before it expires (Pipedrive signs them for 5 minutes)
const INIT_TIMEOUT_MS = 5000; // Pipedrive hides a frame that has not initialized within 10 s
const MIN_HEIGHT = 100;
const MAX_HEIGHT = 750;

// Pipedrive's JWT, taken out of the address bar (history, copied links, screenshots): call it before anything
// else runs. The panel and the settings page both start with it.
export function takeTokenFromAddressBar() {
  const query = new URLSearchParams(window.location.search);
  const token = query.get("token") || "";
  if (query.has("token")) {
    query.delete("token");
    const rest = query.toString();
    window.history.replaceState(window.history.state, "", window.location.pathname + (rest ? `?${rest}` : ""));
  }
  return token;
}

// The page's own short message in `box`, for when Pipedrive's snackbar is not there (Host's fallback).
export function pageToast(box) {
  let timer = null;
  return (message) => {
    box.textContent = message;
    box.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(() => (box.hidden = true), 4000);
  };
}

// Pipedrive's theme on the page: the stylesheets key everything off this class.
export function applyTheme(theme) {
  document.documentElement.className = theme === "dark" ? "theme-dark" : "theme-light";
}

// The `exp` of a JWT, read without verifying it: only to know when to ask for a new one.
function expiryOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    if (typeof claims.exp === "number") return claims.exp * 1000;
  } catch (_) {
    // not a JWT we can read: fall back to the lifetime Pipedrive documents
  }
  return Date.now() + 4 * 60000;
}

// Pipedrive's page around the panel. Every method works outside Pipedrive too (panel opened on its own, or
// the SDK missing), falling back to what the panel can do by itself.
export class Host {
  constructor({ initialToken, onTheme, onVisible, toast }) {
    this.sdk = null;
    this.ready = false;
    this.token = initialToken || "";
    this.tokenExpiry = this.token ? expiryOf(this.token) : 0;
    this.pendingToken = null;
    this.lastHeight = 0;
    this.onTheme = onTheme;
    this.onVisible = onVisible;
    this.toast = toast;
  }

  // Called first thing on load; resolves either way (ready or not) within INIT_TIMEOUT_MS.
  async initialize(height) {
    const SDK = window.AppExtensionsSDK;
    if (!SDK || window.parent === window) return false;
    try {
      this.sdk = new SDK();
    } catch (_) {
      return false; // no `id` in the URL: not opened by Pipedrive
    }
    const size = { height: this.clamp(height) };
    const timeout = new Promise((resolve) => setTimeout(() => resolve(false), INIT_TIMEOUT_MS));
    const started = this.sdk.initialize({ size }).then(() => true, () => false);
    this.ready = await Promise.race([started, timeout]);
    if (this.ready) {
      this.lastHeight = size.height;
      this.listen(SDK.Event.USER_SETTINGS_CHANGE, (data) => data && data.theme && this.onTheme(data.theme));
      this.listen(SDK.Event.VISIBILITY, (data) => data && data.is_visible && this.onVisible());
    }
    return this.ready;
  }

  listen(event, handler) {
    try {
      // Pipedrive answers with {data: {...}}; accept the bare object as well.
      this.sdk.listen(event, (message) => handler(message && "data" in message ? message.data : message));
    } catch (_) {
      // an older host without this event: nothing to follow
    }
  }

  command(name, args) {
    const SDK = window.AppExtensionsSDK;
    return this.sdk.execute(SDK.Command[name], args);
  }

  // A JWT good for at least another minute: the page's own until the SDK is ready, then fresh ones.
  async bearer(forceNew = false) {
    if (!forceNew && this.token && Date.now() < this.tokenExpiry - TOKEN_MARGIN_MS) return this.token;
    if (!this.ready) return this.token;
    if (!this.pendingToken) {
      this.pendingToken = this.command("GET_SIGNED_TOKEN")
        .then((answer) => {
          this.token = answer.token;
          this.tokenExpiry = expiryOf(this.token);
          return this.token;
        })
        .finally(() => {
          this.pendingToken = null;
        });
    }
    return this.pendingToken;
  }

  clamp(height) {
    return Math.max(MIN_HEIGHT, Math.min(MAX_HEIGHT, Math.ceil(height)));
  }

  resize(height) {
    const wanted = this.clamp(height);
    if (!this.ready || wanted === this.lastHeight) return;
    this.lastHeight = wanted;
    this.command("RESIZE", { height: wanted }).catch(() => {});
  }

  snackbar(message) {
    if (this.ready) {
      this.command("SHOW_SNACKBAR", { message }).catch(() => this.toast(message));
    } else {
      this.toast(message);
    }
  }

  async confirm({ title, description, okText }) {
    if (!this.ready) return window.confirm(`${title}\n\n${description}`);
    const answer = await this.command("SHOW_CONFIRMATION", {
      title,
      description,
      okText,
      cancelText: "Cancel",
      okColor: window.AppExtensionsSDK.Color.NEGATIVE,
    });
    return Boolean(answer && answer.confirmed);
  }
}

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error) || (status ? `The app answered ${status}.` : "The app is not reachable."));
    this.status = status;
    this.code = (body && body.code) || (status === 0 ? "network" : `http_${status}`);
    this.details = body && Array.isArray(body.details) ? body.details : [];
    const seconds = parseInt(retryAfter || "", 10);
    this.retryAfter = Number.isFinite(seconds) && seconds > 0 ? seconds : null;
  }
}

// The /api/v1 Goals proxy, exactly as a partner would call it, with the panel's JWT as the credential.
export class Api {
  constructor(base, host) {
    this.base = base.replace(/\/v1$/, ""); // "/api": paths below name their version (/v1/goals, /v2/pipelines)
    this.host = host;
  }

  async call(method, path, { query, body } = {}, retried = false) {
    const token = await this.host.bearer(retried);
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const url = this.base + path + (query ? `?${new URLSearchParams(query)}` : "");
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", // the panel never sends or accepts cookies
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (_) {
      throw new ApiError(0, null, null);
    }
    const payload = await response.json().catch(() => null);
    if (response.ok && payload && payload.success !== false) return payload;
    const error = new ApiError(response.status, payload, response.headers.get("Retry-After"));
    // A token that expired in flight: once, with a brand-new one.
    if (error.code === "unauthorized" && !retried && this.host.ready) return this.call(method, path, { query, body }, true);
    throw error;
  }

  async find(query) {
    const answer = await this.call("GET", "/v1/goals/find", { query });
    return (answer.data && answer.data.goals) || [];
  }

  async progress(goalId, period) {
    const query = { "period.start": period.start, "period.end": period.end };
    const answer = await this.call("GET", `/v1/goals/${encodeURIComponent(goalId)}/results`, { query });
    return answer.data ? Number(answer.data.progress) || 0 : 0;
  }

  // The goal's snapshots in a window of days ({from, to}), oldest first: the app's own data, no Pipedrive call.
  async history(goalId, days) {
    const answer = await this.call("GET", `/v1/goals/${encodeURIComponent(goalId)}/history`, { query: days });
    return (answer.data && answer.data.points) || [];
  }

  // A reference list (Pipedrive's /v2/pipelines, /v1/users...): the whole answer, for its data and paging.
  async reference(path, query) {
    return this.call("GET", path, query ? { query } : {});
  }

  // The caller's installation (the app's own data): locale and default currency among it.
  async installation() {
    return (await this.call("GET", "/v1/app/installation")).data;
  }

  async add(goal) {
    return (await this.call("POST", "/v1/goals", { body: goal })).data.goal;
  }

  async update(goalId, goal) {
    return (await this.call("PUT", `/v1/goals/${encodeURIComponent(goalId)}`, { body: goal })).data.goal;
  }

  async remove(goalId) {
    await this.call("DELETE", `/v1/goals/${encodeURIComponent(goalId)}`);
  }
}
