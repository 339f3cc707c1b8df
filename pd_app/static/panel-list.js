// The goal list: groups of cards built from the <template id="goal-card"> markup, each filled in once its
// progress arrives, and given its trend once its history does. Text goes in through textContent only, so nothing from the API is ever parsed as HTML.

import {
  GOAL_TYPES,
  STATUS_LABELS,
  assess,
  currentPeriod,
  formatPeriod,
  formatValue,
  metaLine,
  periodNote,
  typeKey,
} from "./panel-goals.js";
import { drawTrend, fromPeriodStart, trendLabel, usablePoints } from "./panel-trend.js";

const $ = (selector, root) => root.querySelector(selector);

export function goalTitle(goal) {
  return goal.title || GOAL_TYPES[typeKey(goal.type)] || "Goal";
}

export class GoalList {
  constructor(root, { me, onEdit, onDelete }) {
    this.root = root;
    this.box = $(".goal-groups", root);
    this.me = me;
    this.ref = null; // the reference data (names, currencies) once loaded
    this.onEdit = onEdit;
    this.onDelete = onDelete;
  }

  // groups: [{title, goals}]; progress: Map of goal id -> number | null; filter: {active, type};
  // history: Map of goal id -> history points | null
  render(groups, progress, filter, history = new Map()) {
    this.box.replaceChildren();
    let shown = 0;
    for (const group of groups) {
      const goals = filter.type ? group.goals.filter((goal) => typeKey(goal.type) === filter.type) : group.goals;
      if (!goals.length) continue;
      shown += goals.length;
      const heading = document.createElement("h2");
      heading.className = "group-title";
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(goals.length);
      heading.append(group.title, " ", count);
      this.box.append(heading, ...goals.map((goal) => this.card(goal)));
      for (const goal of goals) {
        if (progress.has(goal.id)) this.fill(goal, progress.get(goal.id));
        if (history.has(goal.id)) this.trend(goal, history.get(goal.id));
      }
    }
    this.empty(shown, groups.some((group) => group.goals.length), filter.active);
  }

  // The card's edit button (where focus goes back to after its form closes), or null when it is not listed.
  editButton(goalId) {
    const node = goalId ? $(`.goal[data-goal-id="${CSS.escape(goalId)}"]`, this.box) : null;
    return node ? $('[data-action="edit-goal"]', node) : null;
  }

  empty(shown, any, active) {
    const [title, text, action] = any
      ? ["No goals of this type", "Pick another type above, or create a goal of this type.", "Create a goal"]
      : active
        ? ["No goals yet", "Set a target for deals or activities and follow its progress right here.", "Create your first goal"]
        : ["No inactive goals", "Goals you deactivate in Pipedrive are listed here.", "Create a goal"];
    $(".empty", this.root).hidden = shown > 0;
    $(".empty-title", this.root).textContent = title;
    $(".empty-text", this.root).textContent = text;
    $(".empty .button", this.root).textContent = action;
  }

  card(goal) {
    const node = document.getElementById("goal-card").content.firstElementChild.cloneNode(true);
    const title = goalTitle(goal);
    node.dataset.goalId = goal.id;
    node.classList.add("pending");
    $(".goal-title", node).textContent = title;
    $(".goal-meta", node).textContent = metaLine(goal, this.me, this.ref);
    $(".goal-value", node).textContent = "Loading progress…";
    $(".bar", node).setAttribute("aria-label", `Progress of ${title}`);
    const edit = $('[data-action="edit-goal"]', node);
    const remove = $('[data-action="delete-goal"]', node);
    edit.setAttribute("aria-label", `Edit ${title}`);
    remove.setAttribute("aria-label", `Delete ${title}`);
    edit.addEventListener("click", () => this.onEdit(goal));
    remove.addEventListener("click", () => this.onDelete(goal));
    return node;
  }

  // progress: the goal's result for its current period, or null when it could not be read.
  fill(goal, progress) {
    const node = $(`.goal[data-goal-id="${CSS.escape(goal.id)}"]`, this.box);
    if (!node) return;
    const period = currentPeriod(goal);
    node.classList.remove("pending");
    $(".goal-period", node).textContent = `${formatPeriod(period)} · ${periodNote(period)}`;
    if (progress === null) {
      delete node.dataset.ratio;
      this.showReached(node);
      $(".goal-value", node).textContent = "Progress not available right now";
      return;
    }
    const outcome = goal.expected_outcome || {};
    const result = assess(progress, Number(outcome.target) || 0, period);
    const chip = $(".chip", node);
    chip.textContent = STATUS_LABELS[result.status];
    chip.className = `chip ${result.status}`;
    node.dataset.status = result.status;
    const bar = $(".bar", node);
    const pace = $(".bar-pace", node);
    // CSSOM writes are allowed by the CSP (only inline style attributes and <style> elements are not).
    $(".bar-fill", node).style.width = `${Math.min(100, result.percent)}%`;
    pace.style.left = `${Math.round(result.expected * 100)}%`;
    pace.hidden = period.when !== "current";
    pace.title = `Where a steady pace would be today: ${Math.round(result.expected * 100)}%`;
    bar.classList.add(result.status);
    bar.setAttribute("aria-valuenow", String(Math.min(100, result.percent)));
    $(".goal-value", node).textContent = `${formatValue(progress, outcome, this.ref)} of ${formatValue(outcome.target, outcome, this.ref)}`;
    $(".goal-percent", node).textContent = `${result.percent}%`;
    node.dataset.ratio = String(result.ratio);
    this.showReached(node);
  }

  // points: the goal's snapshots over the period the card shows, or null when there is nothing to show (the
  // period has not started, or the history could not be read: the card simply goes without a trend).
  trend(goal, points) {
    const node = $(`.goal[data-goal-id="${CSS.escape(goal.id)}"]`, this.box);
    if (!node) return;
    const box = $(".goal-trend", node);
    const period = currentPeriod(goal);
    const usable = fromPeriodStart(usablePoints(points), goal, period);
    box.replaceChildren();
    box.hidden = points === null;
    if (usable.length) node.dataset.lastProgress = String(usable[usable.length - 1].progress);
    else delete node.dataset.lastProgress;
    this.showReached(node);
    if (points === null) return;
    if (usable.length < 2) {
      const none = document.createElement("p");
      none.className = "trend-empty muted";
      none.textContent = "No history yet";
      box.append(none);
      return;
    }
    box.append(drawTrend(usable, period, trendLabel(usable, period, goal.interval), box.clientWidth));
  }

  // Reached: this period's result is at or over the target; until (or unless) the result is known, the latest
  // snapshot decides. A badge with a check and a word, so it does not rest on colour alone.
  showReached(node) {
    const ratio = "ratio" in node.dataset ? Number(node.dataset.ratio) : Number(node.dataset.lastProgress);
    const reached = ratio >= 1;
    node.classList.toggle("reached", reached);
    $(".reached-badge", node).hidden = !reached;
    $(".chip", node).hidden = reached; // it would only repeat "Achieved"
  }
}
