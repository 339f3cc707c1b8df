// The partner keys section: the company's keys, a form to create one (the key is shown once), and revoking one
// after Pipedrive's confirmation. Every change goes through /api/v1/app/keys.

import { FormErrors, SecretOnce, el, when } from "./settings-ui.js";

const SCOPES = { read: "Read", full: "Read and change" };

export class KeysSection {
  constructor(root, { api, host, onFailure }) {
    this.root = root;
    this.api = api;
    this.host = host;
    this.onFailure = onFailure; // a failure that stops the whole page: true when it took over
    this.body = root.querySelector("table.keys tbody");
    this.table = root.querySelector("table.keys");
    this.empty = root.querySelector('[data-empty="keys"]');
    this.form = root.querySelector('form[data-form="key"]');
    this.errors = new FormErrors(this.form);
    this.secret = new SecretOnce(root.querySelector('[data-secret="key"]'));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
  }

  async load() {
    const answer = await this.api.call("GET", "/v1/app/keys");
    this.render(answer.data || []);
  }

  render(keys) {
    this.body.replaceChildren(...keys.map((key) => this.row(key)));
    this.table.hidden = keys.length === 0;
    this.empty.hidden = keys.length !== 0;
  }

  row(key) {
    const origins = key.origins.length ? key.origins.join(", ") : "Servers only";
    const served = key.served_by ? `Served by ${key.served_by.user_name || `user ${key.served_by.user_id}`}` : "";
    const status = key.active
      ? el("span", { class: "chip on_track", text: "Active" })
      : el("span", { class: "chip", text: `Revoked ${when(key.revoked_at)}` });
    const action = key.active
      ? el("button", {
          type: "button",
          class: "button danger-text small",
          text: "Revoke",
          "aria-label": `Revoke the key ${key.name}`,
          onclick: () => this.revoke(key),
        })
      : null;
    return el(
      "tr",
      { "data-key-id": String(key.id), class: key.active ? "" : "revoked" },
      el("th", { scope: "row" }, el("span", { class: "key-name", text: key.name }), el("span", { class: "muted sub", text: served })),
      el("td", {}, el("code", { text: `${key.prefix}…` })),
      el("td", { text: SCOPES[key.scope] || key.scope }),
      el("td", { class: "origins", text: origins }),
      el("td", { text: when(key.last_used_at) }),
      el("td", {}, status),
      el("td", { class: "actions" }, action),
    );
  }

  values() {
    const data = new FormData(this.form);
    const body = { name: String(data.get("name") || "") };
    const scope = String(data.get("scope") || "");
    if (scope) body.scope = scope;
    const origins = String(data.get("origins") || "")
      .split(/[\s,]+/)
      .map((origin) => origin.trim())
      .filter(Boolean);
    if (origins.length) body.origins = origins;
    return body;
  }

  async create() {
    this.errors.clear();
    const submit = this.form.querySelector('[type="submit"]');
    submit.disabled = true;
    try {
      const answer = await this.api.call("POST", "/v1/app/keys", { body: this.values() });
      this.form.reset();
      this.secret.show(answer.data.key);
      this.host.snackbar(`Key “${answer.data.name}” created`);
      await this.load();
    } catch (err) {
      if (err.code === "validation_failed") this.errors.show(err.details);
      else if (!this.onFailure(err)) this.errors.alert(`The key was not created: ${err.message}`);
    } finally {
      submit.disabled = false;
    }
  }

  async revoke(key) {
    let confirmed = false;
    try {
      confirmed = await this.host.confirm({
        title: `Revoke the key “${key.name}”?`,
        description: `Whatever uses ${key.prefix}… stops working at once. This cannot be undone.`,
        okText: "Revoke",
      });
    } catch (_) {
      this.host.snackbar("Pipedrive could not ask for a confirmation; nothing was revoked");
    }
    if (!confirmed) return;
    try {
      await this.api.call("DELETE", `/v1/app/keys/${encodeURIComponent(key.id)}`);
      this.host.snackbar(`Key “${key.name}” revoked`);
    } catch (err) {
      if (err.code !== "not_found") {
        if (!this.onFailure(err)) this.host.snackbar(`The key was not revoked: ${err.message}`);
        return;
      }
    }
    await this.load().catch((err) => this.onFailure(err));
    this.form.querySelector("input").focus();
  }
}
