// The create/edit form. It knows the Goals API's rules (which params go with which goal type, a currency only
// for value goals) and shows the proxy's `validation_failed` details beside the fields they name.

import { ACTIVITY_TYPES, CURRENCIES, DEAL_TYPES, GOAL_TYPES, localToday, formatDay, typeKey } from "./panel-goals.js";

// A detail's dotted `field` → the form field that shows it (longest prefix wins).
const FIELD_FOR_PATH = [
  ["type.params.pipeline_id", "pipelines"],
  ["type.params.stage_id", "stage"],
  ["type.params.activity_type_id", "activity_types"],
  ["type", "type"],
  ["assignee.id", "assignee_id"],
  ["assignee", "assignee"],
  ["expected_outcome.target", "target"],
  ["expected_outcome.tracking_metric", "metric"],
  ["expected_outcome.currency_id", "currency"],
  ["expected_outcome", "target"],
  ["duration.end", "end"],
  ["duration", "start"],
  ["interval", "interval"],
  ["title", "title"],
];
const LABELS = {
  title: "Title",
  type: "Goal type",
  assignee: "Assignee",
  assignee_id: "Team or user ID",
  pipelines: "Pipeline IDs",
  stage: "Stage ID",
  activity_types: "Activity type IDs",
  metric: "Track by",
  currency: "Currency",
  target: "Target",
  interval: "Interval",
  start: "Start date",
  end: "End date",
};

function fieldFor(path) {
  const match = FIELD_FOR_PATH.find(
    ([prefix]) => path === prefix || path.startsWith(prefix + ".") || path.startsWith(prefix + "["),
  );
  return match ? match[1] : null;
}

// "End date must not be before duration.start." -> "... before the start date."
function humanize(text) {
  return text.replace(/\b[a-z_]+(\.[a-z_]+)+\b/g, (path) => {
    const name = fieldFor(path);
    return name ? `the ${LABELS[name].toLowerCase()}` : path;
  });
}

function idList(text) {
  const parts = text.split(",").map((part) => part.trim()).filter(Boolean);
  if (!parts.length) return null; // null tracks all
  if (parts.some((part) => !/^[0-9]{1,10}$/.test(part))) throw new Error("Use whole numbers separated by commas.");
  return parts.map(Number);
}

export class GoalForm {
  constructor(root, { me, company, onSubmit, onCancel, onDelete }) {
    this.form = root.querySelector("form");
    this.alertBox = root.querySelector(".form-alert");
    this.me = me;
    this.company = company;
    this.goal = null;
    this.el = (name) => this.form.elements.namedItem(name);
    this.fill("type", Object.entries(GOAL_TYPES));
    this.fill("currency", Object.entries(CURRENCIES).map(([id, code]) => [id, code]));
    for (const name of ["type", "metric", "assignee"]) this.el(name).addEventListener("change", () => this.sync());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(onSubmit);
    });
    root.querySelector('[data-action="cancel-form"]').addEventListener("click", onCancel);
    this.form.addEventListener("keydown", (event) => event.key === "Escape" && onCancel());
    root.querySelector('[data-action="delete-goal"]').addEventListener("click", () => onDelete(this.goal));
  }

  fill(name, pairs) {
    const select = this.el(name);
    for (const [value, label] of pairs) select.add(new Option(label, value));
  }

  field(name) {
    return this.form.querySelector(`[data-field="${name}"]`);
  }

  // Show only the fields that make sense for the chosen type, metric and assignee.
  sync() {
    const type = this.el("type").value;
    const metric = this.el("metric");
    const activity = ACTIVITY_TYPES.includes(type);
    // Activities have no value to add up; a forecast is an amount of money.
    metric.options[1].disabled = activity;
    metric.options[0].disabled = type === "revenue_forecast";
    if (activity) metric.value = "quantity";
    if (type === "revenue_forecast") metric.value = "sum";
    this.field("pipelines").hidden = !DEAL_TYPES.includes(type);
    this.field("stage").hidden = type !== "deals_progressed";
    this.field("activity_types").hidden = !activity;
    this.field("currency").hidden = metric.value !== "sum";
    const assignee = this.el("assignee").value;
    this.field("assignee_id").hidden = assignee !== "team" && assignee !== "person";
    this.el("target").closest(".field").querySelector("label").textContent =
      metric.value === "sum" ? "Target amount" : "Target count";
  }

  open(goal) {
    this.goal = goal;
    this.form.reset();
    this.clearErrors();
    this.form.querySelector(".form-title").textContent = goal ? "Edit goal" : "New goal";
    this.form.querySelector('[data-action="delete-goal"]').hidden = !goal;
    const set = (name, value) => {
      this.el(name).value = value === null || value === undefined ? "" : String(value);
    };
    if (!goal) {
      const today = new Date(localToday());
      set("start", formatDay(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1)));
      set("currency", "1");
    } else {
      const params = (goal.type && goal.type.params) || {};
      const outcome = goal.expected_outcome || {};
      const assignee = goal.assignee || {};
      set("title", goal.title);
      set("type", typeKey(goal.type));
      set("pipelines", (params.pipeline_id || []).join(", "));
      set("stage", params.stage_id);
      set("activity_types", (params.activity_type_id || []).join(", "));
      set("metric", outcome.tracking_metric || "quantity");
      set("currency", outcome.currency_id || "1");
      set("target", outcome.target);
      set("interval", goal.interval);
      set("start", goal.duration && goal.duration.start);
      set("end", goal.duration && goal.duration.end);
      let who = assignee.type;
      if (who === "person" && Number(assignee.id) === this.me) who = "me";
      set("assignee", who || "me");
      if (who === "team" || who === "person") set("assignee_id", assignee.id);
    }
    this.sync();
  }

  focus() {
    this.el("title").focus();
  }

  // The request body; a value the form can judge by itself (an id list) is checked here, everything else is
  // left to the proxy so its messages stay the single source of truth.
  body() {
    const errors = [];
    const value = (name) => this.el(name).value.trim();
    const ids = (name) => {
      try {
        return idList(value(name));
      } catch (err) {
        errors.push([name, err.message]);
        return null;
      }
    };
    const type = value("type");
    const params = {};
    if (DEAL_TYPES.includes(type)) params.pipeline_id = ids("pipelines");
    if (type === "deals_progressed" && value("stage")) params.stage_id = this.number(value("stage"));
    if (ACTIVITY_TYPES.includes(type)) params.activity_type_id = ids("activity_types");
    const who = value("assignee");
    const assignee = { me: { id: this.me, type: "person" }, company: { id: this.company, type: "company" } }[who] || {
      type: who,
      ...(value("assignee_id") ? { id: this.number(value("assignee_id")) } : {}),
    };
    const outcome = { tracking_metric: value("metric") };
    if (value("target")) outcome.target = this.number(value("target"));
    if (outcome.tracking_metric === "sum") outcome.currency_id = Number(value("currency"));
    const duration = { end: value("end") || null };
    if (value("start")) duration.start = value("start");
    const body = { type: { name: type, params }, assignee, expected_outcome: outcome, duration, interval: value("interval") };
    if (value("title")) body.title = value("title");
    return { body, errors };
  }

  number(text) {
    // A well-formed number goes as a number; anything else as typed, for the proxy to explain.
    return /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : text;
  }

  async submit(onSubmit) {
    this.clearErrors();
    const { body, errors } = this.body();
    if (errors.length) {
      for (const [name, message] of errors) this.showError(name, `${LABELS[name]}: ${message}`);
      this.focusFirstError();
      return;
    }
    const buttons = this.form.querySelectorAll("button");
    buttons.forEach((button) => (button.disabled = true));
    try {
      await onSubmit(this.goal, body);
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  }

  // details: [{field, message, code}] from the proxy's validation_failed answer.
  showDetails(details) {
    const general = [];
    for (const detail of details) {
      const path = String(detail.field || "");
      let name = fieldFor(path);
      if (name === "assignee_id" && this.field("assignee_id").hidden) name = "assignee";
      if (name && this.field(name).hidden) name = null;
      // "expected_outcome.currency_id is required." → "Currency is required."
      const message = String(detail.message || "is not valid.");
      const text = humanize(name && message.startsWith(path) ? LABELS[name] + message.slice(path.length) : message);
      if (name) this.showError(name, text);
      else general.push(text);
    }
    this.alert(general.length ? general.join(" ") : "Please correct the highlighted fields.");
    this.focusFirstError();
  }

  showError(name, text) {
    const field = this.field(name);
    const input = field.querySelector("input, select");
    const message = field.querySelector(".field-error");
    field.classList.add("invalid");
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", message.id);
    message.textContent = text;
    message.hidden = false;
  }

  focusFirstError() {
    const first = this.form.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
  }

  alert(text) {
    this.alertBox.textContent = text;
    this.alertBox.hidden = !text;
  }

  clearErrors() {
    this.alert("");
    for (const field of this.form.querySelectorAll(".field.invalid")) {
      field.classList.remove("invalid");
      const input = field.querySelector("input, select");
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      field.querySelector(".field-error").hidden = true;
    }
  }
}
