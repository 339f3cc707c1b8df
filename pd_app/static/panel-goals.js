// What a goal means for a person: its current period, how far along it should be, and the words and numbers
// that say so. Pure functions over the Goals API's JSON (and the reference data, for names); dates are
// "YYYY-MM-DD" strings, computed in UTC so a daylight-saving change never shifts a day.

import { formatDayRange, formatList, formatMoney, formatNumber } from "./panel-format.js";

export const GOAL_TYPES = {
  deals_won: "Deals won",
  deals_progressed: "Deals progressed",
  deals_started: "Deals started",
  revenue_forecast: "Revenue forecast",
  activities_completed: "Activities completed",
  activities_added: "Activities added",
};
export const DEAL_TYPES = ["deals_won", "deals_progressed", "deals_started", "revenue_forecast"];
export const ACTIVITY_TYPES = ["activities_completed", "activities_added"];
export const INTERVALS = { weekly: "week", monthly: "month", quarterly: "quarter", yearly: "year" };

// Pipedrive sometimes labels types ("Deals started") where the spec names them (deals_started): accept both.
export function typeKey(type) {
  const name = (type && type.name) || "";
  if (GOAL_TYPES[name]) return name;
  const found = Object.entries(GOAL_TYPES).find(([, label]) => label.toLowerCase() === name.toLowerCase());
  return found ? found[0] : name;
}

export function typeLabel(type) {
  const key = typeKey(type);
  return GOAL_TYPES[key] || key || "Goal";
}

// --- dates ---------------------------------------------------------------------------------------------
const DAY_MS = 86400000;

export function parseDay(text) {
  const [y, m, d] = String(text).split("-").map(Number);
  return Date.UTC(y, m - 1, d);
}

export function formatDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function localToday(now = new Date()) {
  return Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
}

function addMonths(ms, months) {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, 1);
}

// The interval period that contains `day`: Monday-to-Sunday weeks, calendar months, quarters and years.
function periodAround(interval, day) {
  const d = new Date(day);
  if (interval === "weekly") {
    const start = day - ((d.getUTCDay() + 6) % 7) * DAY_MS;
    return [start, start + 6 * DAY_MS];
  }
  const months = { monthly: 1, quarterly: 3, yearly: 12 }[interval] || 1;
  const firstMonth = Math.floor(d.getUTCMonth() / months) * months;
  const start = Date.UTC(d.getUTCFullYear(), firstMonth, 1);
  return [start, addMonths(start, months) - DAY_MS];
}

// The period to show for a goal today: the interval period holding today, clipped to the goal's duration.
// A goal that has ended shows its last period, one that has not started its first.
export function currentPeriod(goal, today = localToday()) {
  const duration = goal.duration || {};
  const first = duration.start ? parseDay(duration.start) : today;
  const last = duration.end ? parseDay(duration.end) : null;
  let when = "current";
  let ref = today;
  if (today < first) {
    when = "future";
    ref = first;
  } else if (last !== null && today > last) {
    when = "past";
    ref = last;
  }
  let [start, end] = periodAround(goal.interval, ref);
  start = Math.max(start, first);
  if (last !== null) end = Math.min(end, last);
  return { start: formatDay(start), end: formatDay(end), when };
}

// How much of the period has gone by, today included (0..1).
export function elapsedShare(period, today = localToday()) {
  if (period.when === "future") return 0;
  if (period.when === "past") return 1;
  const start = parseDay(period.start);
  const days = (parseDay(period.end) - start) / DAY_MS + 1;
  return Math.min(1, Math.max(0, ((today - start) / DAY_MS + 1) / days));
}

// --- progress -------------------------------------------------------------------------------------------
// status: achieved | on_track | behind | upcoming | missed
export function assess(progress, target, period, today = localToday()) {
  const ratio = target > 0 ? progress / target : progress > 0 ? 1 : 0;
  const percent = Math.round(ratio * 100);
  const expected = elapsedShare(period, today);
  let status;
  if (ratio >= 1) status = "achieved";
  else if (period.when === "future") status = "upcoming";
  else if (period.when === "past") status = "missed";
  // A little slack, so a goal one deal short of a straight line on day one is not already "behind".
  else status = ratio + 0.02 >= expected ? "on_track" : "behind";
  return { percent, ratio, expected, status };
}

export const STATUS_LABELS = {
  achieved: "Achieved",
  on_track: "On track",
  behind: "Behind",
  upcoming: "Not started",
  missed: "Missed",
};

// --- words and numbers ----------------------------------------------------------------------------------
// ref: the Reference (panel-ref.js) or null; whatever it does not know is written as an id.
const nameOf = (ref, kind, id, noun) => (ref && ref.name(kind, id)) || `${noun} ${id}`;

// A sum goal's currency code: its own currency_id's, or the user's default currency for a goal without one.
function currencyCode(outcome, ref) {
  if (!ref) return null;
  return outcome.currency_id ? ref.currencyCode(outcome.currency_id) : ref.me.default_currency || null;
}

// "Sales, Renewals"; "Pipelines 1, 2" when no name is known.
function namesOf(ref, kind, ids, noun, nouns) {
  const names = ids.map((id) => ref && ref.name(kind, id));
  if (names.every((name) => !name)) return `${ids.length === 1 ? noun : nouns} ${formatList(ids.map(String))}`;
  return formatList(ids.map((id, i) => names[i] || `${noun} ${id}`));
}

export function formatValue(value, outcome, ref = null) {
  const number = Number(value) || 0;
  if (!outcome || outcome.tracking_metric !== "sum") return formatNumber(number);
  const code = currencyCode(outcome, ref);
  if (code) return formatMoney(number, code);
  return outcome.currency_id ? `${formatNumber(number)} (currency ${outcome.currency_id})` : formatNumber(number);
}

export function formatPeriod(period) {
  return formatDayRange(parseDay(period.start), parseDay(period.end));
}

// "3 days left", "ended", "starts in 5 days": what a seller wants to know about the period.
export function periodNote(period, today = localToday()) {
  const days = (a, b) => Math.round((a - b) / DAY_MS);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (period.when === "past") return "ended";
  if (period.when === "future") return `starts in ${plural(days(parseDay(period.start), today), "day")}`;
  const left = days(parseDay(period.end), today);
  return left === 0 ? "last day" : `${plural(left, "day")} left`;
}

export function assigneeLabel(assignee, me, ref = null) {
  if (!assignee) return "";
  if (assignee.type === "company") return "Company";
  if (assignee.type === "team") return `Team ${assignee.id}`;
  return Number(assignee.id) === Number(me) ? "You" : nameOf(ref, "users", assignee.id, "User");
}

// What the goal counts, in words: "Deals won · Sales pipeline", "Deals progressed to Proposal made · Sales
// pipeline", "Activities completed · Call, Meeting". No pipeline or type named means all of them.
export function countsLine(goal, ref = null) {
  const params = (goal.type && goal.type.params) || {};
  let what = typeLabel(goal.type);
  if (typeKey(goal.type) === "deals_progressed" && params.stage_id) {
    what += ` to ${nameOf(ref, "stages", params.stage_id, "Stage")}`;
  }
  const parts = [what];
  const pipelines = Array.isArray(params.pipeline_id) ? params.pipeline_id : [];
  const types = Array.isArray(params.activity_type_id) ? params.activity_type_id : [];
  if (pipelines.length) parts.push(namesOf(ref, "pipelines", pipelines, "Pipeline", "Pipelines"));
  if (types.length) parts.push(namesOf(ref, "activityTypes", types, "Activity type", "Activity types"));
  return parts.join(" · ");
}

export function metaLine(goal, me, ref = null) {
  const interval = INTERVALS[goal.interval] ? `per ${INTERVALS[goal.interval]}` : goal.interval;
  return [countsLine(goal, ref), interval, assigneeLabel(goal.assignee, me, ref)].filter(Boolean).join(" · ");
}
