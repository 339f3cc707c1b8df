// Pipedrive's reference data (pipelines, stages, activity types, users, currencies) and the user's own locale
// and currency, read once per panel load through the proxy (which caches them per company). Whatever cannot be
// read is simply not known: pickers fall back to id inputs and cards to ids, never an error screen.

// kind -> [path under /api, the noun a hint uses]
const SOURCES = {
  pipelines: ["/v2/pipelines", "pipelines"],
  stages: ["/v2/stages", "stages"],
  activityTypes: ["/v1/activityTypes", "activity types"],
  users: ["/v1/users", "users"],
  currencies: ["/v1/currencies", "currencies"],
};
const MAX_PAGES = 10; // v2 lists come in pages of up to 500; a company with more is not a form's job

// Items that are live: Pipedrive keeps deleted pipelines and stages, inactive types and users in its lists.
function live(item) {
  return item && item.is_deleted !== true && item.active_flag !== false && item.id !== undefined;
}

const byOrder = (a, b) => (a.order_nr ?? 0) - (b.order_nr ?? 0) || a.id - b.id;

export class Reference {
  constructor() {
    this.lists = {}; // kind -> items
    this.states = {}; // kind -> "ok" | "forbidden" | "failed"
    this.me = {}; // {locale, default_currency} of the installation, when known
  }

  // Everything at once; resolves when each read has answered or failed.
  async load(api) {
    const installation = api.installation().then(
      (data) => (this.me = data || {}),
      () => (this.me = {}),
    );
    const lists = Object.entries(SOURCES).map(([kind, [path]]) =>
      this.loadList(api, path).then(
        (items) => {
          this.lists[kind] = items.filter(live).sort(byOrder);
          this.states[kind] = "ok";
        },
        (err) => {
          this.lists[kind] = [];
          this.states[kind] = err.code === "forbidden" ? "forbidden" : "failed";
        },
      ),
    );
    await Promise.all([installation, ...lists]);
    return this;
  }

  async loadList(api, path) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const query = path.startsWith("/v2/") ? { limit: "500", ...(cursor ? { cursor } : {}) } : undefined;
      const answer = await api.reference(path, query);
      items.push(...(Array.isArray(answer.data) ? answer.data : []));
      cursor = answer.additional_data && answer.additional_data.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  anyFailed() {
    return Object.values(this.states).includes("failed");
  }

  known(kind) {
    return this.states[kind] === "ok";
  }

  // The one-line hint under a picker that fell back to id inputs; "" when the picker works.
  hint(kind) {
    const noun = SOURCES[kind][1];
    if (this.states[kind] === "forbidden") return `Ask an admin to grant access to ${noun} to pick them by name.`;
    if (this.states[kind] === "failed") return `Pipedrive's ${noun} could not be loaded: enter IDs instead.`;
    return "";
  }

  list(kind) {
    return this.lists[kind] || [];
  }

  find(kind, id) {
    return this.list(kind).find((item) => Number(item.id) === Number(id)) || null;
  }

  name(kind, id) {
    const item = this.find(kind, id);
    return item ? item.name : null;
  }

  stagesOf(pipelineIds) {
    const stages = this.list("stages");
    return pipelineIds ? stages.filter((stage) => pipelineIds.includes(Number(stage.pipeline_id))) : stages;
  }

  currencyCode(id) {
    const currency = this.find("currencies", id);
    return currency ? currency.code : null;
  }

  // Currencies with the user's default first, then by code.
  currencies() {
    const main = this.me.default_currency;
    return [...this.list("currencies")].sort(
      (a, b) => (b.code === main) - (a.code === main) || String(a.code).localeCompare(String(b.code)),
    );
  }

  defaultCurrencyId() {
    const first = this.currencies()[0];
    return first ? first.id : null;
  }
}
