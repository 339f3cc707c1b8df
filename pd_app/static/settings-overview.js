// The read-only sections of the settings page: installations, the Pipedrive budget with its 14-day chart, and
// the cache and limit settings. All from GET /api/v1/app/settings.

import { count, day, el, when } from "./settings-ui.js";

const SVG = "http://www.w3.org/2000/svg";
const STATUS = {
  active: ["Active", "on_track"],
  reauth_required: ["Needs reconnecting", "behind"],
  uninstalled: ["Uninstalled", ""],
};
const UNITS = { seconds: "s", tokens: "tokens", retries: "", requests: "" };

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

export function renderInstallations(tbody, installations) {
  tbody.replaceChildren(
    ...installations.map((inst) => {
      const [label, tone] = STATUS[inst.status] || [inst.status, ""];
      const name = inst.user_name || `User ${inst.user_id}`;
      const action = inst.reconnect_url
        ? el("a", {
            href: inst.reconnect_url,
            target: "_blank",
            rel: "noopener",
            text: "Reconnect link",
            "aria-label": `Reconnect link for ${name} (only ${name} can use it)`,
          })
        : null;
      return el(
        "tr",
        { "data-user-id": String(inst.user_id) },
        el("th", { scope: "row" }, name, inst.is_admin ? el("span", { class: "chip role", text: "Admin" }) : null),
        el("td", {}, el("span", { class: `chip ${tone}`, text: label })),
        el("td", { text: when(inst.installed_at) }),
        el("td", { text: when(inst.last_refreshed_at) }),
        el("td", { class: "actions" }, action),
      );
    }),
  );
}

// Today against the cap, and the 14 days as bars. The chart is an image with a text alternative that says what
// it shows, and the same figures are in a table beside it for whoever prefers one.
export function renderBudget(root, budget) {
  const { spent_today: spent, cap, days } = budget;
  const share = cap ? Math.min(100, (spent / cap) * 100) : 0;
  root.querySelector(".budget-today").textContent = cap
    ? `Today: ${count(spent)} of ${count(cap)} tokens spent (${Math.round(share)}%).`
    : `Today: ${count(spent)} tokens spent. No daily cap is set.`;
  const bar = root.querySelector(".budget-bar");
  bar.hidden = !cap;
  bar.setAttribute("aria-valuenow", String(Math.round(share)));
  bar.setAttribute("aria-valuetext", `${count(spent)} of ${count(cap)} tokens`);
  bar.classList.toggle("behind", share >= 90);
  bar.querySelector(".bar-fill").style.width = `${share}%`;
  const resets = new Date(budget.resets_at);
  root.querySelector(".budget-reset").textContent = `The day restarts at midnight UTC (${when(resets)} your time).`;
  root.querySelector(".chart").replaceChildren(chart(days, cap));
  root.querySelector(".chart-table tbody").replaceChildren(
    ...days.map((d) => el("tr", {}, el("th", { scope: "row", text: day(d.date, true) }), el("td", { text: count(d.spent) }))),
  );
}

function chart(days, cap) {
  const width = 560;
  const height = 150;
  const top = 20;
  const bottom = 22;
  const plot = height - top - bottom;
  const peak = Math.max(1, ...days.map((d) => d.spent));
  const step = width / days.length;
  const busiest = days.reduce((best, d) => (d.spent > best.spent ? d : best), days[0]);
  const total = days.reduce((sum, d) => sum + d.spent, 0);
  const summary =
    `Tokens spent per day over the last ${days.length} days: ${count(total)} in all, ` +
    `${busiest.spent ? `most on ${day(busiest.date, true)} (${count(busiest.spent)})` : "none on any day"}, ` +
    `${count(days[days.length - 1].spent)} today${cap ? ` against a daily cap of ${count(cap)}` : ""}.`;
  const image = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "budget-svg",
    role: "img",
    "aria-labelledby": "budget-chart-desc",
  });
  image.append(svg("title", { id: "budget-chart-desc" }, summary));
  image.append(svg("line", { x1: 0, x2: width, y1: top + plot, y2: top + plot, class: "axis" }));
  days.forEach((d, i) => {
    const h = d.spent ? Math.max(2, (d.spent / peak) * plot) : 0;
    const x = i * step + step * 0.18;
    const isToday = i === days.length - 1;
    const rect = svg("rect", {
      x: x.toFixed(1),
      y: (top + plot - h).toFixed(1),
      width: (step * 0.64).toFixed(1),
      height: h.toFixed(1),
      rx: 2,
      class: isToday ? "day today" : "day",
    });
    rect.append(svg("title", {}, `${day(d.date, true)}: ${count(d.spent)} tokens`));
    image.append(rect);
    if (i === 0 || isToday || i === Math.floor(days.length / 2)) {
      const label = isToday ? "Today" : day(d.date);
      image.append(svg("text", { x: (x + step * 0.32).toFixed(1), y: height - 6, class: "tick" }, label));
    }
  });
  image.append(svg("text", { x: 0, y: 10, class: "tick peak" }, `${count(peak)} tokens`));
  return image;
}

export function renderLimits(dl, limits) {
  dl.replaceChildren(
    ...limits.flatMap((limit) => {
      const unit = UNITS[limit.unit] ?? limit.unit;
      const value = typeof limit.value === "number" ? `${count(limit.value)}${unit ? ` ${unit}` : ""}` : String(limit.value);
      return [
        el("dt", {}, el("code", { text: limit.name })),
        el("dd", {}, el("strong", { text: value }), el("span", { class: "muted", text: ` ${limit.description}` })),
      ];
    }),
  );
}
