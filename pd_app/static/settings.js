// The app's settings page inside Pipedrive: boots the SDK like the panel (panel-api.js), and for an admin loads
// the company's installations, partner keys, webhooks, budget and limits through /api/v1/app. Markup lives in
// templates/settings.html; this file fills it in and toggles its screens.

import { Api, Host, applyTheme, pageToast, takeTokenFromAddressBar } from "./panel-api.js";
import { KeysSection } from "./settings-keys.js";
import { renderBudget, renderInstallations, renderLimits } from "./settings-overview.js";
import { WebhooksSection } from "./settings-webhooks.js";

const app = document.getElementById("app");
const $ = (selector, root = app) => root.querySelector(selector);
const $$ = (selector, root = app) => Array.from(root.querySelectorAll(selector));

const initialToken = takeTokenFromAddressBar();

const MAX_HEIGHT = 4000; // a settings page is a page, not a sidebar panel: it may be taller than 750 px

// The panel's host, with a settings page's height range.
class SettingsHost extends Host {
  clamp(height) {
    return Math.max(100, Math.min(MAX_HEIGHT, Math.ceil(height)));
  }
}

const toast = pageToast($(".toast"));

const host = new SettingsHost({ initialToken, onTheme: applyTheme, onVisible: () => {}, toast });
const api = new Api(app.dataset.apiBase, host);

function show(name) {
  for (const section of $$(".screen")) section.hidden = section.dataset.screenName !== name;
  app.dataset.screen = name;
  fitFrame();
}

function fitFrame() {
  host.resize(document.documentElement.getBoundingClientRect().height);
}

function showUnavailable(message) {
  $(".unavailable-text").textContent = message;
  show("unavailable");
}

// A failure that stops the whole page gets its screen; false when the caller should handle it itself.
function showFailure(err) {
  switch (err.code) {
    case "forbidden":
      show("not_admin");
      return true;
    case "not_installed":
      show("install");
      return true;
    case "reauth_required":
      show("reauth");
      return true;
    case "unauthorized":
      show("denied");
      return true;
    case "network":
      showUnavailable("Goals for Pipedrive is not reachable right now. Check your connection.");
      return true;
    case "rate_limited":
    case "budget_exhausted":
    case "upstream_unavailable":
    case "upstream_error":
      showUnavailable(err.message);
      return true;
    default:
      return false;
  }
}

window.addEventListener("error", () => show("error"));
window.addEventListener("unhandledrejection", () => show("error"));

const events = (app.dataset.webhookEvents || "").split(",").filter(Boolean);
const keys = new KeysSection($('[data-section="keys"]'), { api, host, onFailure: showFailure });
const webhooks = new WebhooksSection($('[data-section="webhooks"]'), { api, host, events, onFailure: showFailure });

async function loadSettings() {
  const answer = await api.call("GET", "/v1/app/settings");
  const data = answer.data;
  if (data.company.name) $("[data-company-name]").textContent = `Partner keys, webhooks and Pipedrive budget of Goals for Pipedrive at ${data.company.name}.`;
  renderInstallations($("table.installations tbody"), data.installations);
  renderBudget($('[data-section="budget"]'), data.budget);
  renderLimits($("dl.limits"), data.limits);
}

async function loadAll() {
  show("loading");
  try {
    // The settings first: it confirms the admin (one check), which the other two then find remembered.
    await loadSettings();
    await Promise.all([keys.load(), webhooks.load()]);
    show("admin");
  } catch (err) {
    if (!showFailure(err)) {
      $(".error-text").textContent = err.message;
      show("error");
    }
  }
}

// Load the page again with a fresh JWT, as Pipedrive would.
async function reload() {
  const token = await host.bearer(true).catch(() => initialToken);
  const next = new URLSearchParams(window.location.search);
  next.set("token", token);
  window.location.replace(`${window.location.pathname}?${next}`);
}

async function boot() {
  for (const button of $$('[data-action="check-again"]')) button.addEventListener("click", reload);
  new ResizeObserver(fitFrame).observe(app);
  const first = app.dataset.screen;
  const ready = host.initialize(app.getBoundingClientRect().height);
  if (first === "loading") loadAll(); // with the page's own JWT while the SDK starts
  else show(first);
  await ready;
  fitFrame();
}

boot();
