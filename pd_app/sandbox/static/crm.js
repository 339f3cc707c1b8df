// The host side of Pipedrive's app extensions SDK (@pipedrive/app-extensions-sdk), as the sandbox's pages that
// frame the app (the deal page's panel, the app's settings page): the frame is the element with data-app-frame,
// its height range in its data-min-height / data-max-height (a panel's 100-750 px by default).
//
// The SDK in the panel posts {id, payload} to window.parent with a MessageChannel port:
//   payload {type: "command", command, args}  -> answer once on the port: {data} or {error: "message"}
//   payload {type: "listener", event}          -> keep the port; post {data} on it whenever the event happens
//   payload {type: "track", event}             -> no port, nothing to answer
// `id` is the custom UI extension id the host put in the iframe URL. Commands other than "initialize" are
// refused until the panel has initialized, and a panel that does not initialize within 10 s is hidden.
(function () {
  "use strict";

  const INIT_DEADLINE_MS = 10000;

  const body = document.body;
  const frame = document.querySelector("[data-app-frame]");
  const failed = document.querySelector("[data-frame-failed]");
  const MIN_HEIGHT = Number(frame.dataset.minHeight || 100);
  const MAX_HEIGHT = Number(frame.dataset.maxHeight || 750);
  const panelOrigin = new URL(frame.src, window.location.href).origin;
  const config = {
    extensionId: body.dataset.extensionId,
    userId: Number(body.dataset.userId),
    tokenUrl: body.dataset.tokenUrl,
  };

  // Inspectable from the browser's console and from tests: what the panel sent, and the host's state.
  const host = {
    initialized: false,
    theme: body.dataset.theme,
    height: null,
    log: [],
    listeners: {},
    snackbars: [],
  };
  window.sandboxHost = host;

  function record(entry) {
    host.log.push({ ...entry, at: Date.now() });
    const item = document.createElement("li");
    item.textContent = [entry.type, entry.command || entry.event || "", entry.note || ""].join(" ").trim();
    document.getElementById("sdk-log").append(item);
  }

  // --- commands -----------------------------------------------------------------------------------------
  function setHeight(height) {
    const wanted = Number(height);
    if (!Number.isFinite(wanted)) return;
    host.height = Math.max(MIN_HEIGHT, Math.min(MAX_HEIGHT, Math.round(wanted)));
    frame.style.height = `${host.height}px`;
  }

  async function signedToken() {
    const response = await fetch(config.tokenUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: config.userId }),
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`Could not sign a token (${response.status})`);
    return { token: (await response.json()).token };
  }

  function snackbar(args) {
    const message = String((args && args.message) || "");
    host.snackbars.push(message);
    const item = document.createElement("div");
    item.className = "snackbar";
    item.textContent = message;
    if (args && args.link && args.link.url) {
      const link = document.createElement("a");
      link.href = args.link.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = args.link.label || args.link.url;
      item.append(" ", link);
    }
    document.getElementById("snackbars").append(item);
    setTimeout(() => item.remove(), 5000);
  }

  function confirmation(args) {
    const dialog = document.getElementById("confirm");
    const ok = document.getElementById("confirm-ok");
    const cancel = document.getElementById("confirm-cancel");
    document.getElementById("confirm-title").textContent = args.title || "";
    document.getElementById("confirm-text").textContent = args.description || "";
    ok.textContent = args.okText || "OK";
    cancel.textContent = args.cancelText || "Cancel";
    ok.className = args.okColor === "negative" ? "negative" : args.okColor === "secondary" ? "" : "primary";
    return new Promise((resolve) => {
      const finish = (confirmed) => {
        ok.onclick = cancel.onclick = dialog.oncancel = null;
        if (dialog.open) dialog.close();
        resolve({ confirmed });
      };
      ok.onclick = () => finish(true);
      cancel.onclick = () => finish(false);
      dialog.oncancel = () => finish(false); // Escape
      dialog.showModal();
      cancel.focus();
    });
  }

  const commands = {
    initialize(args) {
      // A (re)loaded panel document starts over: the ports of the one before it are dead.
      host.initialized = true;
      host.listeners = {};
      clearTimeout(deadline);
      if (args && args.size && args.size.height) setHeight(args.size.height);
      frame.hidden = false;
      failed.hidden = true;
    },
    get_signed_token: signedToken,
    resize(args) {
      setHeight(args && args.height);
    },
    show_snackbar: snackbar,
    show_confirmation: confirmation,
    get_metadata() {
      return { windowHeight: window.innerHeight, windowWidth: window.innerWidth };
    },
    redirect_to(args) {
      snackbar({ message: `Pipedrive would now open ${args && args.view} ${(args && args.id) || ""}` });
    },
    open_modal() {
      snackbar({ message: "Modals are not emulated by the sandbox" });
      return { status: "closed" };
    },
    close_modal() {},
    set_notification() {},
    set_focus_mode() {},
    show_floating_window() {},
    hide_floating_window() {},
  };

  async function runCommand(name, args) {
    if (!Object.prototype.hasOwnProperty.call(commands, name)) throw new Error(`Unknown command: ${name}`);
    if (name !== "initialize" && !host.initialized) throw new Error("Custom UI is not initialized");
    return commands[name](args || {});
  }

  // --- events -------------------------------------------------------------------------------------------
  function emit(event, data) {
    for (const port of host.listeners[event] || []) port.postMessage({ data });
    record({ type: "event", event, note: JSON.stringify(data) });
  }

  function applyTheme(theme) {
    host.theme = theme;
    document.documentElement.className = `crm-${theme}`;
    const toggle = document.getElementById("theme-toggle");
    toggle.textContent = theme === "dark" ? "Light theme" : "Dark theme";
    toggle.setAttribute("aria-pressed", String(theme === "dark"));
    document.querySelector('.who input[name="theme"]').value = theme;
    for (const link of document.querySelectorAll(".crm-links a")) {
      const url = new URL(link.href);
      url.searchParams.set("theme", theme);
      link.href = url.toString();
    }
    const here = new URL(window.location.href);
    here.searchParams.set("theme", theme);
    window.history.replaceState(null, "", here.toString());
  }

  // --- the message pump ---------------------------------------------------------------------------------
  window.addEventListener("message", (event) => {
    // Only the panel's frame, from the origin it was loaded from, speaks to this host.
    if (event.source !== frame.contentWindow || event.origin !== panelOrigin) return;
    const message = event.data || {};
    const payload = message.payload || {};
    const port = event.ports && event.ports[0];
    if (message.id !== config.extensionId) {
      if (port) port.postMessage({ error: "Unknown custom UI identifier" });
      return;
    }
    record({ type: payload.type, command: payload.command, event: payload.event, args: payload.args });
    if (payload.type === "command" && port) {
      runCommand(payload.command, payload.args).then(
        (data) => port.postMessage(data === undefined ? {} : { data }),
        (err) => port.postMessage({ error: err.message }),
      );
    } else if (payload.type === "listener" && port) {
      (host.listeners[payload.event] = host.listeners[payload.event] || []).push(port);
    }
  });

  // Pipedrive's 10-second rule. (The SDK's initialize usually arrives before the frame's load event, so the
  // clock starts with this page rather than with the frame's load.)
  const deadline = setTimeout(() => {
    if (host.initialized) return;
    frame.hidden = true;
    failed.hidden = false;
    record({ type: "host", note: "app frame hidden: not initialized within 10 s" });
  }, INIT_DEADLINE_MS);

  document.getElementById("theme-toggle").addEventListener("click", () => {
    applyTheme(host.theme === "dark" ? "light" : "dark");
    emit("user_settings_change", { theme: host.theme });
  });
  document.getElementById("user").addEventListener("change", (event) => event.target.form.submit());
  const panelToggle = document.getElementById("panel-toggle"); // the deal page's collapsible panel
  if (panelToggle) {
    panelToggle.addEventListener("click", () => {
      const open = panelToggle.getAttribute("aria-expanded") !== "true";
      panelToggle.setAttribute("aria-expanded", String(open));
      document.getElementById("panel-body").hidden = !open;
      emit("visibility", { is_visible: open, context: { invoker: "user" } });
    });
  }
})();
