// The Goals panel inside Pipedrive: boots the SDK, loads goals and their progress through the proxy, and gives
// every outcome a screen. Markup lives in templates/panel.html; this file only fills it in and toggles it.

import { Api, Host, applyTheme, pageToast, takeTokenFromAddressBar } from "./panel-api.js";
import { setLocale } from "./panel-format.js";
import { GoalForm } from "./panel-form.js";
import { GOAL_TYPES, assigneeLabel, currentPeriod } from "./panel-goals.js";
import { GoalList, goalTitle } from "./panel-list.js";
import { Reference } from "./panel-ref.js";
import { Screens } from "./panel-screens.js";
import { historyWindow } from "./panel-trend.js";

const app = document.getElementById("app");
const $ = (selector, root = app) => root.querySelector(selector);
const $$ = (selector, root = app) => Array.from(root.querySelectorAll(selector));

const initialToken = takeTokenFromAddressBar();

const PROGRESS_CONCURRENCY = 4;
const HISTORY_CONCURRENCY = 2; // history is the app's own data (no Pipedrive tokens), and an extra: fewer at once
const state = {
  me: Number(app.dataset.userId),
  company: Number(app.dataset.companyId),
  active: "true",
  type: "",
  groups: [],
  progress: new Map(), // goal id -> progress of its current period (null: not available)
  history: new Map(), // goal id -> snapshots over that period (null: none to show)
  loadSeq: 0,
  loadedAt: 0,
  reference: null, // the promise of the reference data: read once per panel load (again only after a failure)
  editing: null, // the goal the form is open for (null: a new one)
  focusAfterLoad: undefined, // where focus goes once the list is drawn again: a goal id, or null for "+ Goal"
};

const toast = pageToast($(".toast"));

// Said to screen readers (the snackbar is Pipedrive's, outside this frame): cleared first so that the same
// words twice are announced twice.
function announce(message) {
  const box = $(".announcer");
  box.textContent = "";
  requestAnimationFrame(() => (box.textContent = message));
}

const host = new Host({
  initialToken,
  onTheme: applyTheme,
  // Coming back into view after a while: show fresh numbers.
  onVisible: () => app.dataset.screen === "list" && Date.now() - state.loadedAt > 60000 && loadGoals(),
  toast,
});
const api = new Api(app.dataset.apiBase, host);

const screens = new Screens(app, { fit: (height) => host.resize(height), retry: () => loadGoals() });
const show = (name) => screens.show(name);
const fitFrame = () => screens.fit();
const showError = (message) => screens.error(message);
const showFailure = (err) => screens.failure(err);

// Never a blank frame: a script error anywhere becomes the error screen.
window.addEventListener("error", () => showError());
window.addEventListener("unhandledrejection", () => showError());

// --- the list -------------------------------------------------------------------------------------------
async function loadGoals() {
  const seq = ++state.loadSeq;
  if (app.dataset.screen !== "list") show("loading");
  try {
    const filter = { is_active: state.active };
    const [mine, company] = await Promise.all([
      api.find(filter),
      api.find({ ...filter, "assignee.type": "company" }),
    ]);
    // Only once the goals came: a Pipedrive that is down (or a panel not installed) is not asked five more times.
    await loadReference();
    if (seq !== state.loadSeq) return;
    const seen = new Set(mine.map((goal) => goal.id));
    state.groups = [
      { title: "Your goals", goals: mine },
      { title: "Company goals", goals: company.filter((goal) => !seen.has(goal.id)) },
    ];
    state.loadedAt = Date.now();
    state.progress.clear();
    state.history.clear();
    renderList();
    show("list");
    if (state.focusAfterLoad !== undefined) {
      focusInList(state.focusAfterLoad);
      state.focusAfterLoad = undefined;
    }
    loadHistory(seq);
    await loadProgress(seq);
  } catch (err) {
    if (seq === state.loadSeq && !showFailure(err)) showError(err.message);
  }
}

// Names for the pickers and cards, the user's locale and currency: never an error of their own (whatever
// cannot be read leaves ids in their place); read again on the next load only when something failed.
function loadReference() {
  if (!state.reference) {
    state.reference = new Reference().load(api).then((ref) => {
      setLocale(ref.me.locale);
      list.ref = ref;
      form.configure(ref);
      if (ref.anyFailed()) state.reference = null;
      return ref;
    });
  }
  return state.reference;
}

// Run `task` for each listed goal not in `done`, `concurrency` at a time, while this load is still current.
function forEachGoal(seq, concurrency, done, task) {
  const queue = state.groups.flatMap((group) => group.goals).filter((goal) => !done.has(goal.id));
  const worker = async () => {
    while (queue.length && seq === state.loadSeq) await task(queue.shift());
  };
  return Promise.all(Array.from({ length: concurrency }, worker));
}

const STOPS = ["rate_limited", "budget_exhausted", "not_installed", "reauth_required", "unauthorized"];

function loadProgress(seq) {
  return forEachGoal(seq, PROGRESS_CONCURRENCY, state.progress, async (goal) => {
    let progress = null;
    try {
      progress = await api.progress(goal.id, currentPeriod(goal));
    } catch (err) {
      if (STOPS.includes(err.code)) throw err; // the whole panel's screen; any other: this card says so
    }
    if (seq !== state.loadSeq) return;
    state.progress.set(goal.id, progress);
    list.fill(goal, progress);
  });
}

// Trends load beside the progress, once the cards are on screen. A trend is an extra: whatever goes wrong while
// reading or drawing one leaves that card without it, never an error screen.
function loadHistory(seq) {
  return forEachGoal(seq, HISTORY_CONCURRENCY, state.history, async (goal) => {
    const days = historyWindow(currentPeriod(goal));
    let points = null;
    try {
      if (days) points = await api.history(goal.id, days);
    } catch (_) {
      points = null;
    }
    if (seq !== state.loadSeq) return;
    state.history.set(goal.id, points);
    try {
      list.trend(goal, points);
    } catch (_) {
      state.history.set(goal.id, null);
      list.trend(goal, null);
    }
  });
}

const list = new GoalList($('[data-screen-name="list"]'), {
  me: state.me,
  onEdit: (goal) => openForm(goal),
  onDelete: (goal) => deleteGoal(goal),
});

function renderList() {
  list.render(state.groups, state.progress, { active: state.active === "true", type: state.type }, state.history);
  fitFrame();
}

// --- create, edit, delete -------------------------------------------------------------------------------
const form = new GoalForm($('[data-screen-name="form"]'), {
  me: state.me,
  company: state.company,
  onSubmit: saveGoal,
  onCancel: closeForm,
  onDelete: (goal) => deleteGoal(goal),
});

function openForm(goal) {
  state.editing = goal ? goal.id : null;
  form.open(goal || null);
  show("form");
  form.focus();
}

function closeForm() {
  show("list");
  focusInList(state.editing);
}

// Back to the card's edit button (the control that opened the form), or "+ Goal" when there is no such card.
function focusInList(goalId) {
  (list.editButton(goalId) || $('.toolbar [data-action="new-goal"]')).focus();
}

function tell(message) {
  host.snackbar(message);
  announce(message);
}

async function saveGoal(goal, body) {
  let saved;
  try {
    saved = goal ? await api.update(goal.id, body) : await api.add(body);
  } catch (err) {
    return saveFailed(err);
  }
  // The list shows the user's own goals and the company's: say where one assigned to someone else went.
  const who = body.assignee;
  const elsewhere = who.type === "team" || (who.type === "person" && Number(who.id) !== state.me);
  const label = elsewhere ? ` for ${assigneeLabel(who, state.me, list.ref)}` : "";
  tell(`${goal ? "Goal saved" : "Goal created"}${label}${elsewhere ? ": it shows in their panel, not in yours" : ""}`);
  if (!goal) state.active = "true";
  state.focusAfterLoad = (saved && saved.id) || (goal && goal.id) || null;
  syncFilters();
  show("list");
  loadGoals();
}

function saveFailed(err) {
  if (err.code === "validation_failed") return form.showDetails(err.details);
  if (err.code === "rate_limited") {
    return form.alert(`Pipedrive asked us to slow down. Nothing was saved; try again in ${err.retryAfter || 30} seconds.`);
  }
  if (err.code === "budget_exhausted") {
    return form.alert("Today's Pipedrive budget for Goals is spent. Nothing was saved; it resets at midnight UTC.");
  }
  if (err.code === "outcome_unknown") {
    return form.alert("Pipedrive did not answer in time: the goal may or may not have been saved. Check the list before trying again.");
  }
  if (err.code === "upstream_unavailable" || err.code === "network" || err.code === "upstream_error") {
    return form.alert("Pipedrive is not reachable right now. Nothing was saved; try again in a moment.");
  }
  if (err.code === "not_found") {
    tell("This goal no longer exists");
    state.focusAfterLoad = null;
    show("list");
    return loadGoals();
  }
  if (!showFailure(err)) form.alert(err.message);
}

async function deleteGoal(goal) {
  const title = goalTitle(goal);
  const trigger = document.activeElement;
  let confirmed = false;
  try {
    confirmed = await host.confirm({
      title: "Delete this goal?",
      description: `“${title}” will be deleted for everyone in your company. This cannot be undone.`,
      okText: "Delete",
    });
  } catch (_) {
    tell("Pipedrive could not ask for a confirmation; nothing was deleted");
  }
  if (!confirmed) {
    if (trigger && trigger !== document.body) trigger.focus(); // back from Pipedrive's dialog
    return;
  }
  try {
    await api.remove(goal.id);
    tell("Goal deleted");
  } catch (err) {
    if (err.code !== "not_found") {
      if (!showFailure(err)) tell(`The goal was not deleted: ${err.message}`);
      return;
    }
    tell("This goal was already deleted");
  }
  state.focusAfterLoad = null;
  show("list");
  loadGoals();
}

// --- wiring ---------------------------------------------------------------------------------------------
function syncFilters() {
  for (const radio of $$('input[name="active"]')) radio.checked = radio.value === state.active;
  $("#type-filter").value = state.type;
}

function wire() {
  const typeFilter = $("#type-filter");
  for (const [value, label] of Object.entries(GOAL_TYPES)) typeFilter.add(new Option(label, value));
  typeFilter.addEventListener("change", () => {
    state.type = typeFilter.value;
    renderList();
  });
  for (const radio of $$('input[name="active"]')) {
    radio.addEventListener("change", () => {
      state.active = radio.value;
      loadGoals();
    });
  }
  for (const button of $$('[data-action="new-goal"]')) button.addEventListener("click", () => openForm(null));
  for (const button of $$('[data-action="retry"]')) button.addEventListener("click", () => loadGoals());
  for (const button of $$('[data-action="check-again"]')) button.addEventListener("click", reloadPanel);
  new ResizeObserver(fitFrame).observe(app);
}

// Load the panel again with a fresh JWT, as Pipedrive would (after installing in the other window).
async function reloadPanel() {
  const token = await host.bearer(true).catch(() => initialToken);
  const next = new URLSearchParams(window.location.search);
  next.set("token", token);
  window.location.replace(`${window.location.pathname}?${next}`);
}

async function boot() {
  wire();
  const first = app.dataset.screen;
  const ready = host.initialize(app.getBoundingClientRect().height);
  if (first === "ready") loadGoals(); // with the page's own JWT while the SDK starts
  else show(first);
  await ready;
  fitFrame();
}

boot();
