// How the goal form shows what is wrong: each problem under its field (aria-invalid, aria-describedby), a
// summary above the form in a live region (announced), and focus on the first invalid field. Problems come
// from the form's own checks (panel-rules.js) or from the proxy's `validation_failed` details; both are
// written "<the field's label> <predicate>.", so the same mistake reads the same either way.

// A detail's dotted `field` -> the form field that shows it (first match wins).
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

export function fieldFor(path) {
  const match = FIELD_FOR_PATH.find(
    ([prefix]) => path === prefix || path.startsWith(prefix + ".") || path.startsWith(prefix + "["),
  );
  return match ? match[1] : null;
}

export const shown = (node) => !node.closest("[hidden]");

export class FormErrors {
  constructor(form) {
    this.form = form;
    this.summary = form.querySelector(".form-alert");
  }

  field(name) {
    return this.form.querySelector(`[data-field="${name}"]`);
  }

  // The field's name as it reads on screen now ("Pipelines", or "Pipeline IDs" when ids are typed).
  label(name) {
    const text = Array.from(this.field(name).querySelectorAll(".label-text")).find(shown);
    return text ? text.textContent.trim() : name;
  }

  // The control of a field that shows and can take focus (of a list of checkboxes, the first one).
  control(name) {
    return Array.from(this.field(name).querySelectorAll("input, select")).find((el) => shown(el) && !el.disabled) || null;
  }

  // aria-describedby: the field's error when it has one, and whatever hint or note shows under it.
  describe(name) {
    const field = this.field(name);
    const ids = Array.from(field.querySelectorAll(".field-error, .field-hint"))
      .filter((node) => !node.hidden)
      .map((node) => node.id);
    const targets = Array.from(field.querySelectorAll("input:not([type=checkbox]), select"));
    if (field.matches("fieldset")) targets.push(field);
    for (const target of targets) {
      if (ids.length) target.setAttribute("aria-describedby", ids.join(" "));
      else target.removeAttribute("aria-describedby");
    }
  }

  // details: [{field, message, code}] from the proxy's validation_failed answer, written with the labels.
  showDetails(details) {
    this.clear();
    const problems = [];
    const general = [];
    for (const detail of details) {
      const path = String(detail.field || "");
      let name = fieldFor(path);
      if (name === "assignee_id" && this.field("assignee_id").hidden) name = "assignee";
      if (name && this.field(name).hidden) name = null;
      const message = String(detail.message || "is not valid.");
      // "expected_outcome.target must be at least 0." -> "Target must be at least 0."
      const text = this.humanize(name && message.startsWith(path) ? this.label(name) + message.slice(path.length) : message);
      if (name) problems.push([name, text]);
      else general.push(text);
    }
    this.show(problems, general);
  }

  // "… before duration.start." -> "… before the start date."
  humanize(text) {
    return text.replace(/\b[a-z_]+(\.[a-z_]+)+\b/g, (path) => {
      const name = fieldFor(path);
      return name ? `the ${this.label(name).toLowerCase()}` : path;
    });
  }

  // problems: [field, sentence]; every one under its field, a summary above, focus on the first field.
  show(problems, general = []) {
    const names = [];
    for (const [name, text] of problems) {
      const message = this.field(name).querySelector(".field-error");
      message.textContent = message.hidden ? text : `${message.textContent} ${text}`;
      message.hidden = false;
      this.field(name).classList.add("invalid");
      if (!names.includes(name)) names.push(name);
    }
    // In the order the fields appear on the form, whichever check found them first.
    const position = (name) => Array.from(this.form.querySelectorAll("[data-field]")).indexOf(this.field(name));
    names.sort((a, b) => position(a) - position(b));
    for (const name of names) {
      const control = this.control(name);
      if (control) control.setAttribute("aria-invalid", "true");
      this.describe(name);
    }
    const count = names.length;
    const summary = count
      ? `${count === 1 ? "1 field needs" : `${count} fields need`} correcting: ${names.map((name) => this.label(name)).join(", ")}.`
      : "";
    this.alert([summary, ...general].filter(Boolean).join(" ") || "Pipedrive did not accept the goal.");
    const first = names.length ? this.control(names[0]) : null;
    if (first) first.focus();
  }

  alert(text) {
    this.summary.textContent = text;
  }

  clear() {
    this.alert("");
    for (const field of this.form.querySelectorAll(".field.invalid")) {
      field.classList.remove("invalid");
      for (const control of field.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
      const message = field.querySelector(".field-error");
      message.hidden = true;
      message.textContent = "";
      this.describe(field.dataset.field);
    }
  }
}
