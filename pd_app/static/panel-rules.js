// The Goals API's rules, checked in the browser with the API's own words (pd_app/goals/fields.py, models.py
// and validation.py), so that a form shows every problem at once, before anything is sent. The proxy still
// checks everything: when it answers 400 its `details` are shown the same way (panel-form.js).
//
// A problem is [field, predicate]: the form writes it as "<the field's label> <predicate>.", exactly as the
// proxy writes "<path> <predicate>." and the form replaces the path with the label.

import { readNumber } from "./panel-format.js";

export const MAX_ID = 2 ** 31 - 1;
export const MAX_TARGET = 10 ** 15;
export const MAX_ITEMS = 100;
export const MAX_TITLE = 255;

// The predicates of validation.py's table and fields.py's own errors that the form can run into.
export const SAYS = {
  required: "is required",
  integer: "must be an integer",
  number: "must be a number",
  atLeast: (n) => `must be at least ${n}`,
  atMost: (n) => `must be at most ${n}`,
  tooLong: (n) => `must be at most ${n} characters long`,
  tooMany: (n) => `must have at most ${n} items`,
  notADate: "is not a real calendar date",
  notBeforeStart: "must not be before the start date",
};

// An id as the API takes it (PositiveId): a whole number from 1 to 2^31-1. Returns [value, predicate|null];
// the value is a number whenever the text is one, so the proxy would answer with the same predicate.
export function readId(text) {
  const value = readNumber(text);
  if (typeof value !== "number") return [value, SAYS.integer];
  if (!Number.isInteger(value)) return [value, SAYS.integer];
  if (value < 1) return [value, SAYS.atLeast(1)];
  if (value > MAX_ID) return [value, SAYS.atMost(MAX_ID)];
  return [value, null];
}

// A comma-separated list of ids typed by hand; empty means "all" (null).
export function readIdList(text) {
  const parts = String(text).split(",").map((part) => part.trim()).filter(Boolean);
  if (!parts.length) return [null, null];
  if (parts.length > MAX_ITEMS) return [null, SAYS.tooMany(MAX_ITEMS)];
  const values = [];
  for (const part of parts) {
    const [value, problem] = readId(part);
    if (problem) return [null, problem];
    values.push(value);
  }
  return [values, null];
}

// The target: a number from 0 to 10^15 (Number in fields.py).
export function readTarget(text) {
  if (!String(text).trim()) return [undefined, SAYS.required];
  const value = readNumber(text);
  if (typeof value !== "number") return [value, SAYS.number];
  if (value < 0) return [value, SAYS.atLeast(0)];
  if (value > MAX_TARGET) return [value, SAYS.atMost(MAX_TARGET)];
  return [value, null];
}

// A date control: its value ("YYYY-MM-DD" or "") and whether the browser holds a half-typed date.
export function readDate({ value, badInput }, required) {
  if (badInput) return [value, SAYS.notADate];
  if (!value) return [undefined, required ? SAYS.required : null];
  return [value, null];
}

export function checkTitle(text) {
  return text.length > MAX_TITLE ? SAYS.tooLong(MAX_TITLE) : null;
}

// "YYYY-MM-DD" strings compare as dates.
export function checkRange(start, end) {
  return start && end && end < start ? SAYS.notBeforeStart : null;
}
