// A goal's trend: its progress over the period the card shows, from the app's own snapshots
// (GET /goals/{id}/history), drawn as a small inline SVG. Built with DOM APIs, attributes and CSS classes only:
// the panel's CSP allows no inline style or script.

import { formatDate } from "./panel-format.js";
import { INTERVALS, formatDay, localToday, parseDay } from "./panel-goals.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const HEIGHT = 36; // viewBox units = CSS pixels at the width measured when drawn; it scales evenly after that
const FALLBACK_WIDTH = 280;
const PAD = 3; // keeps the line's stroke and the last point's dot inside the box

// The days to ask history for: the period so far (all of it once it has ended); null before it starts.
export function historyWindow(period, today = localToday()) {
  if (period.when === "future") return null;
  const to = period.when === "past" ? period.end : formatDay(Math.min(today, parseDay(period.end)));
  return { from: period.start, to };
}

// Points a line can be drawn through: a progress ratio (null when the goal's target was 0).
export function usablePoints(points) {
  return (points || []).filter((point) => typeof point.progress === "number" && Number.isFinite(point.progress));
}

// Goals that count what happened within the period (deals won, activities completed...) start every period at
// zero, so a line can begin there: one snapshot already draws a trend. A forecast does not start at zero.
export function fromPeriodStart(points, goal, period) {
  const name = String((goal.type && goal.type.name) || "").toLowerCase();
  if (!points.length || name.includes("forecast") || points[0].date <= period.start) return points;
  return [{ date: period.start, actual: 0, target: points[0].target, progress: 0 }, ...points];
}

function shortDay(day) {
  return formatDate(parseDay(day), { day: "numeric", month: "short" });
}

// "Progress this month: 12% on Nov 1 to 64% today": what the line says, for screen readers and the tooltip.
export function trendLabel(points, period, interval, today = localToday()) {
  const unit = INTERVALS[interval] || "period";
  const span = period.when === "current" ? `this ${unit}` : `in the ${unit} from ${shortDay(period.start)}`;
  const when = (point) => (point.date === formatDay(today) ? "today" : `on ${shortDay(point.date)}`);
  const at = (point) => `${Math.round(point.progress * 100)}% ${when(point)}`;
  return `Progress ${span}: ${at(points[0])} to ${at(points[points.length - 1])}`;
}

function svg(name, attributes) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

const round = (value) => Math.round(value * 10) / 10;

// The sparkline: x is the day within the period (so a line that stops short says the period is not over), y the
// progress from 0 to max(100%, the highest point), with the target (100%) as a dashed line.
export function drawTrend(points, period, label, width = FALLBACK_WIDTH) {
  const w = Math.max(80, Math.round(width || FALLBACK_WIDTH)); // 0 while the list is hidden
  const start = parseDay(period.start);
  const span = Math.max(1, parseDay(period.end) - start);
  const top = Math.max(1, ...points.map((point) => point.progress));
  const x = (point) => round(PAD + (Math.min(1, Math.max(0, (parseDay(point.date) - start) / span)) * (w - 2 * PAD)));
  const y = (value) => round(HEIGHT - PAD - (Math.max(0, value) / top) * (HEIGHT - 2 * PAD));
  const coords = points.map((point) => [x(point), y(point.progress)]);
  const last = coords[coords.length - 1];
  const target = y(1);

  const chart = svg("svg", {
    class: "trend",
    viewBox: `0 0 ${w} ${HEIGHT}`,
    role: "img",
    "aria-label": label,
    "data-points": points.length,
  });
  const title = svg("title", {});
  title.textContent = label;
  const area = svg("path", {
    class: "trend-area",
    d: `M${coords[0][0]},${HEIGHT - PAD} L${coords.map((c) => c.join(",")).join(" L")} L${last[0]},${HEIGHT - PAD} Z`,
  });
  const goal = svg("line", { class: "trend-target", x1: 0, x2: w, y1: target, y2: target });
  // The target's name sits under its line when the line is at the top, above it when progress went past it.
  const goalName = svg("text", {
    class: "trend-target-label",
    x: w - 1,
    y: target < 12 ? target + 10 : target - 3,
    "text-anchor": "end",
    "aria-hidden": "true",
  });
  goalName.textContent = "target";
  const line = svg("polyline", { class: "trend-line", points: coords.map((c) => c.join(",")).join(" ") });
  const dot = svg("circle", { class: "trend-dot", cx: last[0], cy: last[1], r: 2.5 });
  chart.append(title, area, goal, goalName, line, dot);
  return chart;
}
