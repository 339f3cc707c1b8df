// The form's pickers: choose pipelines, a stage, activity types, a person and a currency by name, from
// Pipedrive's reference data (panel-ref.js). Each field holds a picker (.by-name) and a plain id input (.by-id);
// the id input is what shows when Pipedrive's names are not known, with a one-line hint saying why.
// Values go in and come out as ids, so panel-form.js does not care which of the two is showing.

const $ = (selector, root) => root.querySelector(selector);

function option(value, label) {
  return new Option(label, String(value));
}

// A list of checkboxes with "All …" first: ticking All clears the others, ticking one clears All, and
// clearing the last one ticks All again. null means all.
export class Choices {
  constructor(box, { name, allLabel, itemLabel }) {
    this.box = box;
    this.name = name;
    this.allLabel = allLabel;
    this.itemLabel = itemLabel; // id -> "Pipeline 7", for an id the reference data does not list
    this.onChange = () => {};
    box.addEventListener("change", (event) => this.changed(event.target));
  }

  checkbox(value, label, checked) {
    const wrap = document.createElement("label");
    wrap.className = "check";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = this.name;
    input.value = String(value);
    input.checked = checked;
    wrap.append(input, ` ${label}`);
    return wrap;
  }

  // items: [{id, name}]; selected: ids or null (all). Ids missing from items keep a box of their own, so
  // editing a goal never drops what it counts.
  render(items, selected) {
    const ids = selected ? selected.map(Number) : null;
    const rows = [this.checkbox("all", this.allLabel, !ids || !ids.length)];
    for (const item of items) rows.push(this.checkbox(item.id, item.name, Boolean(ids && ids.includes(Number(item.id)))));
    for (const id of ids || []) {
      if (!items.some((item) => Number(item.id) === id)) rows.push(this.checkbox(id, this.itemLabel(id), true));
    }
    this.box.replaceChildren(...rows);
  }

  boxes() {
    return Array.from(this.box.querySelectorAll("input[type=checkbox]"));
  }

  changed(input) {
    const [all, ...rest] = this.boxes();
    if (input === all && all.checked) rest.forEach((box) => (box.checked = false));
    else if (input !== all && input.checked) all.checked = false;
    if (!rest.some((box) => box.checked)) all.checked = true;
    this.onChange();
  }

  value() {
    const picked = this.boxes().filter((box) => box.value !== "all" && box.checked);
    return picked.length ? picked.map((box) => Number(box.value)) : null;
  }
}

// One form field with its picker and its id input.
export class PickField {
  constructor(field) {
    this.field = field;
    this.hint = $(".field-hint", field);
  }

  // byName: whether the picker shows; hint: why it does not ("" for none).
  mode(byName, hint = "") {
    this.field.dataset.mode = byName ? "name" : "id";
    for (const part of this.field.querySelectorAll(".by-name")) part.hidden = !byName;
    for (const part of this.field.querySelectorAll(".by-id")) part.hidden = byName;
    this.hint.textContent = hint;
    this.hint.hidden = !hint;
  }

  get byName() {
    return this.field.dataset.mode === "name";
  }
}

// A <select> of items by name, with a first option for "none" when given; an id it does not list is kept.
export function fillSelect(select, items, selected, { none = null, itemLabel, groups = null } = {}) {
  const value = selected === null || selected === undefined || selected === "" ? "" : String(selected);
  select.replaceChildren();
  if (none !== null) select.add(option("", none));
  if (groups) {
    for (const group of groups) {
      const node = document.createElement("optgroup");
      node.label = group.label;
      for (const item of group.items) node.append(option(item.id, item.name));
      if (group.items.length) select.append(node);
    }
  } else {
    for (const item of items) select.add(option(item.id, item.name));
  }
  if (value && !Array.from(select.options).some((opt) => opt.value === value)) {
    select.add(option(value, itemLabel(value)));
  }
  select.value = value;
  if (select.selectedIndex < 0 && select.options.length) select.selectedIndex = 0;
}

// A hand-typed id list, for the id inputs.
export function idsText(ids) {
  return (ids || []).join(", ");
}
