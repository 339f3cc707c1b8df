// The webhooks section: each webhook with its health and last deliveries, a form to add one (its signing secret
// is shown once), and removing one after Pipedrive's confirmation. Through /api/v1/app/webhooks.

import { FormErrors, SecretOnce, el, when } from "./settings-ui.js";

const EVENT_LABELS = {
  "goal.progress": "A goal's progress changed",
  "goal.reached": "A goal reached its target",
  "installation.reauth_required": "An installation needs reconnecting",
  "installation.uninstalled": "An installation was removed",
};

function outcome(attempt) {
  if (attempt.status && attempt.status >= 200 && attempt.status < 300) return `Delivered (${attempt.status})`;
  if (attempt.status) return `Failed: answered ${attempt.status}`;
  return `Failed: ${attempt.error || "no answer"}`;
}

export class WebhooksSection {
  constructor(root, { api, host, events, onFailure }) {
    this.root = root;
    this.api = api;
    this.host = host;
    this.onFailure = onFailure;
    this.list = root.querySelector("ul.webhooks");
    this.empty = root.querySelector('[data-empty="webhooks"]');
    this.form = root.querySelector('form[data-form="webhook"]');
    this.errors = new FormErrors(this.form);
    this.secret = new SecretOnce(root.querySelector('[data-secret="webhook"]'));
    const checks = this.form.querySelector(".checks");
    for (const name of events) {
      const id = `hook-event-${name.replace(/\W/g, "-")}`;
      checks.append(
        el(
          "div",
          { class: "check" },
          el("input", { type: "checkbox", id, name: "events", value: name, checked: true }),
          el("label", { htmlFor: id }, el("code", { text: name }), ` ${EVENT_LABELS[name] || ""}`),
        ),
      );
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
  }

  async load() {
    const answer = await this.api.call("GET", "/v1/app/webhooks");
    this.render(answer.data || []);
  }

  render(hooks) {
    this.list.replaceChildren(...hooks.map((hook) => this.item(hook)));
    this.list.hidden = hooks.length === 0;
    this.empty.hidden = hooks.length !== 0;
  }

  item(hook) {
    const health = hook.failing
      ? el("span", { class: "chip behind", text: `Failing since ${when(hook.failing_since)}` })
      : el("span", { class: "chip on_track", text: "Healthy" });
    const pending = hook.pending_deliveries
      ? el("span", { class: "muted", text: `${hook.pending_deliveries} waiting to be delivered` })
      : null;
    const attempts = hook.last_attempts.length
      ? el(
          "table",
          { class: "attempts" },
          el("caption", { class: "visually-hidden", text: `Last deliveries to ${hook.url}` }),
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              el("th", { scope: "col", text: "When" }),
              el("th", { scope: "col", text: "Event" }),
              el("th", { scope: "col", text: "Outcome" }),
              el("th", { scope: "col", text: "Time" }),
            ),
          ),
          el(
            "tbody",
            {},
            ...hook.last_attempts.map((attempt) =>
              el(
                "tr",
                { class: attempt.status >= 200 && attempt.status < 300 ? "ok" : "failed" },
                el("td", { text: when(attempt.at) }),
                el("td", {}, el("code", { text: attempt.event_id })),
                el("td", { text: outcome(attempt) }),
                el("td", { text: `${attempt.duration_ms} ms` }),
              ),
            ),
          ),
        )
      : el("p", { class: "muted", text: "No deliveries yet." });
    return el(
      "li",
      { class: "webhook", "data-webhook-id": String(hook.id) },
      el(
        "div",
        { class: "webhook-head" },
        el("code", { class: "webhook-url", text: hook.url }),
        health,
        el("button", {
          type: "button",
          class: "button danger-text small",
          text: "Remove",
          "aria-label": `Remove the webhook ${hook.url}`,
          onclick: () => this.remove(hook),
        }),
      ),
      el("p", { class: "muted", text: `Events: ${hook.events.join(", ")} · added ${when(hook.created_at)}` }),
      pending,
      el("h4", { class: "attempts-title", text: "Last deliveries" }),
      attempts,
    );
  }

  async add() {
    this.errors.clear();
    const data = new FormData(this.form);
    const body = { url: String(data.get("url") || "").trim(), events: data.getAll("events").map(String) };
    const submit = this.form.querySelector('[type="submit"]');
    submit.disabled = true;
    try {
      const answer = await this.api.call("POST", "/v1/app/webhooks", { body });
      this.form.querySelector('input[name="url"]').value = "";
      this.secret.show(answer.data.secret);
      this.host.snackbar("Webhook added");
      await this.load();
    } catch (err) {
      if (err.code === "validation_failed") this.errors.show(err.details);
      else if (!this.onFailure(err)) this.errors.alert(`The webhook was not added: ${err.message}`);
    } finally {
      submit.disabled = false;
    }
  }

  async remove(hook) {
    let confirmed = false;
    try {
      confirmed = await this.host.confirm({
        title: "Remove this webhook?",
        description: `${hook.url} gets no more events, and the deliveries still waiting for it are dropped.`,
        okText: "Remove",
      });
    } catch (_) {
      this.host.snackbar("Pipedrive could not ask for a confirmation; nothing was removed");
    }
    if (!confirmed) return;
    try {
      await this.api.call("DELETE", `/v1/app/webhooks/${encodeURIComponent(hook.id)}`);
      this.host.snackbar("Webhook removed");
    } catch (err) {
      if (err.code !== "not_found") {
        if (!this.onFailure(err)) this.host.snackbar(`The webhook was not removed: ${err.message}`);
        return;
      }
    }
    await this.load().catch((err) => this.onFailure(err));
    this.form.querySelector('input[name="url"]').focus();
  }
}
