// The panel's screens (templates/panel.html's <section data-screen-name>): which one shows, and the words of
// the ones that stop the whole panel (rate limited with its countdown, budget spent, unreachable, error).

import { formatTime } from "./panel-format.js";

export class Screens {
  // fit(height): tell the host the panel's height; retry(): load the goals again (after a countdown).
  constructor(app, { fit, retry }) {
    this.app = app;
    this.onFit = fit;
    this.retry = retry;
    this.countdown = null;
  }

  $(selector) {
    return this.app.querySelector(selector);
  }

  show(name) {
    for (const section of this.app.querySelectorAll(".screen")) section.hidden = section.dataset.screenName !== name;
    this.app.dataset.screen = name;
    if (name !== "rate_limited") this.stopCountdown();
    this.fit();
  }

  fit() {
    this.onFit(this.app.getBoundingClientRect().height);
  }

  error(message) {
    this.$(".error-text").textContent = message || "The panel ran into a problem. Reloading it usually helps.";
    this.show("error");
  }

  stopCountdown() {
    clearInterval(this.countdown);
    this.countdown = null;
  }

  rateLimited(seconds) {
    let left = seconds || 30;
    const render = () => {
      this.$(".countdown").textContent = left === 1 ? "1 second" : `${left} seconds`;
    };
    this.show("rate_limited");
    render();
    this.countdown = setInterval(() => {
      left -= 1;
      if (left > 0) return render();
      this.stopCountdown();
      this.retry();
    }, 1000);
  }

  budgetExhausted(seconds) {
    const reset = new Date(Date.now() + (seconds || 0) * 1000);
    this.$(".budget-reset").textContent = seconds ? `at ${formatTime(reset)} (midnight UTC)` : "after midnight UTC";
    this.show("budget_exhausted");
  }

  unreachable(err) {
    const appDown = err.code === "network";
    this.$(".unreachable-title").textContent = appDown
      ? "Goals for Pipedrive is not reachable right now"
      : "Pipedrive is not reachable right now";
    this.$(".unreachable-text").textContent = appDown
      ? "Check your connection; your goals are safe in Pipedrive."
      : "Your goals are safe. This is usually over within a few minutes.";
    this.show("unreachable");
  }

  // The screen for a failure that stops the whole panel; false when the caller should handle it itself.
  failure(err) {
    const screen = { not_installed: "install", reauth_required: "reauth", unauthorized: "denied" }[err.code];
    if (screen) {
      this.show(screen);
      return true;
    }
    if (err.code === "rate_limited") this.rateLimited(err.retryAfter);
    else if (err.code === "budget_exhausted") this.budgetExhausted(err.retryAfter);
    else if (["network", "upstream_unavailable", "outcome_unknown", "upstream_error"].includes(err.code)) {
      this.unreachable(err);
    } else return false;
    return true;
  }
}
