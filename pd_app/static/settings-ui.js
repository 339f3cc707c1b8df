// Small pieces the settings page's sections share: building elements, formatting times and numbers for the
// user's locale, a secret shown once with its copy button, and a form's error display.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-") || name.startsWith("aria-") || name === "role" || name === "scope") {
      node.setAttribute(name, value);
    } else node[name] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dayMonth = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
const longDay = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", timeZone: "UTC" });
const number = new Intl.NumberFormat();

export function when(iso, never = "Never") {
  if (!iso) return never;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? never : dateTime.format(date);
}

// A UTC calendar day (YYYY-MM-DD) in words, short ("3 Dec") or long ("Wednesday, 3 December").
export function day(iso, long = false) {
  const date = new Date(`${iso}T00:00:00Z`);
  return (long ? longDay : dayMonth).format(date);
}

export function count(value) {
  return number.format(value);
}

// A secret (a new key, a webhook's signing secret) shown once: the box, its copy button, and hiding it.
export class SecretOnce {
  constructor(box) {
    this.box = box;
    this.input = box.querySelector(".secret-value");
    this.status = box.querySelector(".copied");
    box.querySelector('[data-action="copy"]').addEventListener("click", () => this.copy());
    box.querySelector('[data-action="dismiss"]').addEventListener("click", () => this.hide());
  }

  show(value) {
    this.input.value = value;
    this.status.textContent = "";
    this.box.hidden = false;
    this.box.focus();
  }

  hide() {
    this.input.value = "";
    this.box.hidden = true;
  }

  async copy() {
    let copied = false;
    try {
      await navigator.clipboard.writeText(this.input.value);
      copied = true;
    } catch (_) {
      // A frame may not be allowed the clipboard API: the older command works on a selection.
      this.input.select();
      try {
        copied = document.execCommand("copy");
      } catch (_) {
        copied = false;
      }
    }
    this.status.textContent = copied ? "Copied to the clipboard." : "Select the text and copy it yourself.";
    if (!copied) this.input.select();
  }
}

// A form's errors: one message per field under it (from the API's `details`), or one alert above the fields.
export class FormErrors {
  constructor(form) {
    this.form = form;
    this.alertBox = form.querySelector(".form-alert");
  }

  clear() {
    this.alertBox.hidden = true;
    this.alertBox.textContent = "";
    for (const field of this.form.querySelectorAll(".field")) {
      field.classList.remove("invalid");
      const message = field.querySelector(".field-error");
      message.hidden = true;
      message.textContent = "";
      const control = field.querySelector("input, select, textarea");
      if (control) control.removeAttribute("aria-invalid");
    }
  }

  alert(message) {
    this.alertBox.textContent = message;
    this.alertBox.hidden = false;
  }

  // `details` as the API sends them ({field, message}); a detail whose field has no place in this form goes
  // to the alert. Focus moves to the first field in error.
  show(details) {
    this.clear();
    const loose = [];
    let first = null;
    for (const detail of details) {
      const name = String(detail.field || "").split(/[[.]/)[0];
      const field = this.form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
      if (!field) {
        loose.push(detail.message);
        continue;
      }
      field.classList.add("invalid");
      const message = field.querySelector(".field-error");
      message.textContent = message.textContent ? `${message.textContent} ${detail.message}` : detail.message;
      message.hidden = false;
      const control = field.querySelector("input, select, textarea");
      if (control) control.setAttribute("aria-invalid", "true");
      first = first || control || field.querySelector("input");
    }
    const problems = details.length === 1 ? "1 problem" : `${details.length} problems`;
    this.alert(loose.length ? loose.join(" ") : `Nothing was saved: ${problems} to fix below.`);
    if (first) first.focus();
  }
}
