// Numbers, money and dates in the user's own conventions, with Intl. The locale is the Pipedrive user's
// (`locale` of /api/v1/app/installation, "de_DE" -> "de-DE") once the panel knows it, the browser's until then.

const BROWSER = (typeof navigator !== "undefined" && navigator.language) || "en";

let locale = BROWSER;
let decimalMark = ".";
let groupMark = ",";

// A Pipedrive locale ("en_GB", "pt_BR") as a BCP 47 tag Intl accepts, or null when it is not one.
export function toLanguageTag(value) {
  if (typeof value !== "string" || !value.trim()) return null;
  try {
    return Intl.getCanonicalLocales(value.trim().replace(/_/g, "-"))[0] || null;
  } catch (_) {
    return null;
  }
}

// Use this locale from now on (an unusable one keeps the browser's); returns the tag in use.
export function setLocale(value) {
  locale = toLanguageTag(value) || BROWSER;
  const parts = new Intl.NumberFormat(locale).formatToParts(1234567.5);
  decimalMark = (parts.find((part) => part.type === "decimal") || { value: "." }).value;
  groupMark = (parts.find((part) => part.type === "group") || { value: "" }).value;
  return locale;
}

export function currentLocale() {
  return locale;
}

export function formatNumber(value, maximumFractionDigits = 2) {
  return new Intl.NumberFormat(locale, { maximumFractionDigits }).format(Number(value) || 0);
}

// An amount in a currency given by its ISO code; a code Intl does not know is written after the number.
export function formatMoney(value, code) {
  const number = Number(value) || 0;
  try {
    return new Intl.NumberFormat(locale, {
      style: "currency",
      currency: code,
      maximumFractionDigits: number >= 1000 ? 0 : 2,
    }).format(number);
  } catch (_) {
    return `${formatNumber(number)} ${code}`;
  }
}

// A number as the user types it back in a form: digits, their decimal mark, no grouping.
export function editableNumber(value) {
  if (value === null || value === undefined || value === "") return "";
  return String(value).replace(".", decimalMark);
}

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// What the user typed as a number, written their way ("2.500,5" in Germany, "2,500.5" in Britain; "." is
// taken as a decimal point everywhere it cannot be a thousands separator); the text itself (trimmed) when it is
// not a plain decimal, so that the caller can say what is wrong with it.
export function readNumber(text) {
  let plain = String(text).trim();
  const spaceGroup = /^\s$/.test(groupMark);
  const group = spaceGroup ? "[\\s\u00a0\u202f]" : escape(groupMark);
  const grouped = new RegExp(`^-?[0-9]{1,3}(${group}[0-9]{3})+(${escape(decimalMark)}[0-9]+)?$`);
  if (groupMark && grouped.test(plain)) plain = plain.replace(new RegExp(group, "g"), "");
  if (decimalMark !== "." && plain.split(decimalMark).length === 2 && !plain.includes(".")) {
    plain = plain.replace(decimalMark, ".");
  }
  return /^-?[0-9]+(\.[0-9]+)?$/.test(plain) ? Number(plain) : plain;
}

const dayFormats = new Map();
function dayFormat(options) {
  const key = `${locale}|${JSON.stringify(options)}`;
  if (!dayFormats.has(key)) dayFormats.set(key, new Intl.DateTimeFormat(locale, { ...options, timeZone: "UTC" }));
  return dayFormats.get(key);
}

// Days are UTC midnights (ms), so a daylight-saving change never shifts one.
export function formatDate(ms, options = { day: "numeric", month: "short", year: "numeric" }) {
  return dayFormat(options).format(new Date(ms));
}

export function formatDayRange(startMs, endMs) {
  const format = dayFormat({ day: "numeric", month: "short", year: "numeric" });
  return startMs === endMs ? format.format(new Date(startMs)) : format.formatRange(new Date(startMs), new Date(endMs));
}

export function formatTime(date) {
  return new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" }).format(date);
}

// "Call, Meeting, Email": names side by side, as the user's language lists them.
export function formatList(items) {
  try {
    return new Intl.ListFormat(locale, { style: "short", type: "unit" }).format(items);
  } catch (_) {
    return items.join(", ");
  }
}

setLocale(BROWSER);
