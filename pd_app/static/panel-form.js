// The create/edit form. It knows the Goals API's rules (which params go with which goal type, a currency only
// for value goals), checks them before sending with the API's own words (panel-rules.js), shows every problem
// at once beside its field with a summary that is announced, and maps the proxy's `validation_failed` details
// to the same places when the API still refuses.

import { editableNumber } from "./panel-format.js";
import { ACTIVITY_TYPES, DEAL_TYPES, GOAL_TYPES, formatDay, localToday, typeKey } from "./panel-goals.js";
import { FormErrors } from "./panel-form-errors.js";
import { Choices, PickField, fillSelect, idsText } from "./panel-pickers.js";
import { SAYS, checkRange, checkTitle, readDate, readId, readIdList, readTarget } from "./panel-rules.js";

// The fields that pick by name when Pipedrive's names are known, and take ids when not.
const PICKS = ["assignee_id", "pipelines", "stage", "activity_types", "currency"];

export class GoalForm {
  constructor(root, { me, company, onSubmit, onCancel, onDelete }) {
    this.form = root.querySelector("form");
    this.me = me;
    this.company = company;
    this.goal = null;
    this.ref = null;
    this.el = (name) => this.form.elements.namedItem(name);
    this.errors = new FormErrors(this.form);
    for (const [value, label] of Object.entries(GOAL_TYPES)) this.el("type").add(new Option(label, value));
    this.picks = Object.fromEntries(PICKS.map((name) => [name, new PickField(this.field(name))]));
    this.choices = {
      pipelines: new Choices(this.form.querySelector('[data-choices="pipelines"]'), {
        name: "pipeline",
        allLabel: "All pipelines",
        itemLabel: (id) => `Pipeline ${id}`,
      }),
      activity_types: new Choices(this.form.querySelector('[data-choices="activity_types"]'), {
        name: "activity_type",
        allLabel: "All activity types",
        itemLabel: (id) => `Activity type ${id}`,
      }),
    };
    this.choices.pipelines.onChange = () => this.fillStages(this.stageValue());
    this.el("pipelines").addEventListener("change", () => this.fillStages(this.stageValue()));
    for (const name of ["type", "metric", "assignee", "no_end"]) this.el(name).addEventListener("change", () => this.sync());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(onSubmit);
    });
    root.querySelector('[data-action="cancel-form"]').addEventListener("click", onCancel);
    this.form.addEventListener("keydown", (event) => event.key === "Escape" && onCancel());
    root.querySelector('[data-action="delete-goal"]').addEventListener("click", () => onDelete(this.goal));
    this.configure(null);
  }

  field(name) {
    return this.form.querySelector(`[data-field="${name}"]`);
  }

  // ref: the Reference once loaded (null before): which fields pick by name and which take ids.
  configure(ref) {
    this.ref = ref;
    const known = (kind) => Boolean(ref && ref.known(kind));
    const hint = (kind) => (ref ? ref.hint(kind) : "");
    this.picks.pipelines.mode(known("pipelines"), hint("pipelines"));
    this.picks.stage.mode(known("stages"), hint("stages"));
    this.picks.activity_types.mode(known("activityTypes"), hint("activityTypes"));
    this.picks.currency.mode(known("currencies"), hint("currencies"));
  }

  list(kind) {
    return this.ref ? this.ref.list(kind) : [];
  }

  // Show only the fields that make sense for the chosen type, metric, assignee and end.
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
    this.form.querySelector(".unit").textContent = metric.value === "sum" ? "amount" : "count";

    const who = this.el("assignee").value;
    const person = who === "person";
    this.field("assignee_id").hidden = !person && who !== "team";
    const users = Boolean(this.ref && this.ref.known("users"));
    this.picks.assignee_id.mode(person && users, person && this.ref ? this.ref.hint("users") : "");
    this.field("assignee_id").querySelector(".by-id .label-text").textContent = person ? "User ID" : "Team ID";

    const open = this.el("no_end").checked;
    this.el("end").disabled = open;
    this.form.querySelector("#f-no-end-note").hidden = !open;
    for (const name of ["end", ...PICKS]) this.errors.describe(name);
  }

  stageValue() {
    return this.picks.stage.byName ? this.el("stage_pick").value : this.el("stage").value.trim();
  }

  pipelinesValue() {
    if (this.picks.pipelines.byName) return this.choices.pipelines.value();
    return readIdList(this.el("pipelines").value)[0];
  }

  // The stage picker lists the stages of the chosen pipelines (of all of them when none is chosen), grouped by
  // pipeline when there are several. keep: a stage no pipeline lists stays chosen (a goal being opened).
  fillStages(selected, keep = false) {
    const stages = this.ref ? this.ref.stagesOf(this.pipelinesValue()) : [];
    const order = this.list("pipelines").map((pipeline) => Number(pipeline.id));
    const rank = (id) => (order.includes(id) ? order.indexOf(id) : order.length + id);
    const ids = [...new Set(stages.map((stage) => Number(stage.pipeline_id)))].sort((a, b) => rank(a) - rank(b));
    const groups =
      ids.length > 1
        ? ids.map((id) => ({
            label: (this.ref && this.ref.name("pipelines", id)) || `Pipeline ${id}`,
            items: stages.filter((stage) => Number(stage.pipeline_id) === id),
          }))
        : null;
    const listed = stages.some((stage) => String(stage.id) === String(selected));
    fillSelect(this.el("stage_pick"), stages, keep || listed ? selected : "", {
      none: "Any stage",
      itemLabel: (id) => `Stage ${id}`,
      groups,
    });
  }

  open(goal) {
    this.goal = goal;
    this.form.reset();
    this.errors.clear();
    this.form.querySelector(".form-title").textContent = goal ? "Edit goal" : "New goal";
    this.form.querySelector('[data-action="delete-goal"]').hidden = !goal;
    const set = (name, value) => {
      this.el(name).value = value === null || value === undefined ? "" : String(value);
    };
    const params = (goal && goal.type && goal.type.params) || {};
    const outcome = (goal && goal.expected_outcome) || {};
    const assignee = (goal && goal.assignee) || {};
    const duration = (goal && goal.duration) || {};
    if (goal) {
      set("title", goal.title);
      set("type", typeKey(goal.type));
      set("metric", outcome.tracking_metric || "quantity");
      set("target", editableNumber(outcome.target));
      set("interval", goal.interval);
      set("start", duration.start);
      set("end", duration.end);
      let who = assignee.type;
      if (who === "person" && Number(assignee.id) === this.me) who = "me";
      set("assignee", who || "me");
      if (who === "team" || who === "person") set("assignee_id", assignee.id);
    } else {
      const today = new Date(localToday());
      set("start", formatDay(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1)));
    }
    this.el("no_end").checked = !duration.end;
    // Pickers and id inputs both hold the goal's values: whichever shows, nothing is lost.
    set("pipelines", idsText(params.pipeline_id));
    set("stage", params.stage_id);
    set("activity_types", idsText(params.activity_type_id));
    this.choices.pipelines.render(this.list("pipelines"), params.pipeline_id || null);
    this.choices.activity_types.render(this.list("activityTypes"), params.activity_type_id || null);
    this.fillStages(params.stage_id, true);
    const person = assignee.type === "person" && Number(assignee.id) !== this.me ? assignee.id : "";
    fillSelect(this.el("person"), this.personChoices(), person, { none: "Choose a person", itemLabel: (id) => `User ${id}` });
    const currency = outcome.currency_id || (goal ? "" : this.ref && this.ref.defaultCurrencyId());
    set("currency", outcome.currency_id);
    fillSelect(this.el("currency_pick"), this.currencyChoices(), currency || "", { itemLabel: (id) => `Currency ${id}` });
    this.sync();
  }

  personChoices() {
    return this.list("users").map((user) => ({ id: user.id, name: Number(user.id) === this.me ? `${user.name} (you)` : user.name }));
  }

  currencyChoices() {
    if (!this.ref) return [];
    return this.ref.currencies().map((currency) => ({ id: currency.id, name: `${currency.code} · ${currency.name}` }));
  }

  focus() {
    this.el("title").focus();
  }

  // The request body and every problem found in it, as [field, predicate] in the API's words.
  read() {
    const problems = [];
    const take = (name, [value, problem]) => {
      if (problem) problems.push([name, problem]);
      return value;
    };
    const text = (name) => this.el(name).value.trim();
    // An id from its picker (the chosen option) or its id input (typed, checked); undefined when there is none.
    const id = (field, picker, input, required) => {
      const raw = this.picks[field].byName ? text(picker) : text(input);
      if (!raw) {
        if (required) problems.push([field, SAYS.required]);
        return undefined;
      }
      return this.picks[field].byName ? Number(raw) : take(field, readId(raw));
    };
    const ids = (field, input) =>
      this.picks[field].byName ? this.choices[field].value() : take(field, readIdList(text(input)));

    const type = text("type");
    const params = {};
    if (DEAL_TYPES.includes(type)) params.pipeline_id = ids("pipelines", "pipelines");
    if (type === "deals_progressed") {
      const stage = id("stage", "stage_pick", "stage", false);
      if (stage !== undefined) params.stage_id = stage;
    }
    if (ACTIVITY_TYPES.includes(type)) params.activity_type_id = ids("activity_types", "activity_types");

    const who = text("assignee");
    let assignee = { id: this.me, type: "person" };
    if (who === "company") assignee = { id: this.company, type: "company" };
    // A person from the users picker (or by id); a team always by id (sync() shows the id input for it).
    if (who === "person" || who === "team") assignee = { id: id("assignee_id", "person", "assignee_id", true), type: who };

    const outcome = { target: take("target", readTarget(this.el("target").value)), tracking_metric: text("metric") };
    if (outcome.tracking_metric === "sum") {
      const currency = id("currency", "currency_pick", "currency", false);
      if (currency !== undefined) outcome.currency_id = currency;
    }

    const start = take("start", readDate(this.el("start"), true));
    const open = this.el("no_end").checked;
    const end = open ? null : take("end", readDate(this.el("end"), true));
    const range = open ? null : checkRange(start, end);
    if (range) problems.push(["end", range]);

    const title = text("title");
    const titleProblem = checkTitle(title);
    if (titleProblem) problems.push(["title", titleProblem]);
    const body = { type: { name: type, params }, assignee, expected_outcome: outcome, duration: { start, end }, interval: text("interval") };
    if (title) body.title = title;
    return { body, problems };
  }

  // The proxy's validation_failed details, shown like the form's own findings.
  showDetails(details) {
    this.errors.showDetails(details);
  }

  alert(text) {
    this.errors.alert(text);
  }

  async submit(onSubmit) {
    this.errors.clear();
    const { body, problems } = this.read();
    if (problems.length) {
      return this.errors.show(problems.map(([name, predicate]) => [name, `${this.errors.label(name)} ${predicate}.`]));
    }
    const buttons = this.form.querySelectorAll("button");
    buttons.forEach((button) => (button.disabled = true));
    try {
      await onSubmit(this.goal, body);
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  }
}
