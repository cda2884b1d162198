/**
 * Checking and normalising one value of the key table (`keys.ts`): the type, range and allowed set of a `train`
 * key, and whether an `unsupported` or `ignored` key holds its default.
 * @module
 */
import { closeNames, parseDatasetNames } from "../data/dataset_info.ts";
import type { KeySpec } from "./keys.ts";

/** Whether `v` is a plain mapping. */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** LF's YAML 1.1 boolean spellings. */
const BOOL_WORDS: Record<string, boolean> = { yes: true, on: true, true: true, no: false, off: false, false: false };

/** A boolean, or LF's yes/no/on/off/true/false spelling of one. */
export function asBool(v: unknown): boolean | undefined {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") return BOOL_WORDS[v.toLowerCase()];
  return undefined;
}

/** A value as the error messages quote it. */
export const show = (v: unknown): string => (v === undefined ? "nothing" : JSON.stringify(v));

function range(s: KeySpec): string {
  const lo = s.min !== undefined ? `[${s.min}` : s.gt !== undefined ? `(${s.gt}` : undefined;
  const hi = s.max !== undefined ? `${s.max}]` : s.lt !== undefined ? `${s.lt})` : undefined;
  if (lo && hi) return ` in ${lo}, ${hi}`;
  if (s.min !== undefined) return ` >= ${s.min}`;
  if (s.gt !== undefined) return ` > ${s.gt}`;
  if (hi) return s.max !== undefined ? ` <= ${s.max}` : ` < ${s.lt}`;
  return "";
}

function describe(s: KeySpec): string {
  const orNull = s.def === null || s.nullable ? " or null" : "";
  const k = s.kind!;
  if (typeof k !== "string") {
    const lacking = s.lacking?.length
      ? s.lacking.length <= 6 ? ` (${s.lacking.join(", ")}: not supported yet)` : " (others: not supported yet)"
      : "";
    return `one of ${enumValues(s).join(", ")}${lacking}`;
  }
  const text = {
    bool: "true or false",
    int: `an integer${range(s)}`,
    num: `a number${range(s)}`,
    str: "a string",
    list: "a comma-separated list of names (or a YAML list)",
    nums: "a comma-separated list of numbers (or a YAML list)",
    dict: "a mapping (or a JSON object text)",
    resume: "a checkpoint folder, true (the last checkpoint in output_dir) or false",
  }[k];
  return text + orNull;
}

/** The accepted spellings of an enum key. */
export function enumValues(s: KeySpec): string[] {
  const values = (s.kind as readonly string[]).filter((v) => !s.lacking?.includes(v));
  return [...values, ...Object.keys(s.aliases ?? {})];
}

function inRange(n: number, s: KeySpec): boolean {
  return (s.min === undefined || n >= s.min) && (s.max === undefined || n <= s.max) &&
    (s.gt === undefined || n > s.gt) && (s.lt === undefined || n < s.lt);
}

/** Checks one `train` value; returns the normalised value or throws the problem text. */
export function readValue(key: string, s: KeySpec, v: unknown): unknown {
  const bad = (extra = "") => new Error(`${key}: expected ${describe(s)}, got ${show(v)}${extra}`);
  if (v === null || v === undefined) {
    if (s.kind === "dict") return {};
    if (s.def === null || s.nullable) return null;
    throw bad();
  }
  const k = s.kind!;
  if (typeof k !== "string") {
    if (typeof v !== "string") throw bad();
    const value = s.aliases?.[v] ?? v;
    if (s.lacking?.includes(value)) {
      throw new Error(`${key}: ${value} is not supported by Whetstone yet (supported: ${enumValues(s).join(", ")})`);
    }
    if (!k.includes(value)) {
      const close = closeNames(v, enumValues(s), 3);
      throw bad(close.length ? `; did you mean ${close.join(" or ")}?` : "");
    }
    return value;
  }
  switch (k) {
    case "bool": {
      const b = asBool(v);
      if (b === undefined) throw bad();
      return b;
    }
    case "int":
    case "num":
      if (typeof v !== "number" || !Number.isFinite(v) || (k === "int" && !Number.isInteger(v)) || !inRange(v, s)) {
        throw bad(typeof v === "string" ? " (a string: write the number without quotes)" : "");
      }
      return v;
    case "str":
      if (typeof v !== "string") throw bad();
      return v;
    case "list": {
      if (typeof v !== "string" && !(Array.isArray(v) && v.every((x) => typeof x === "string"))) throw bad();
      const names = parseDatasetNames(v as string | string[]);
      if (names.length === 0) {
        if (s.def === null) return null;
        throw bad();
      }
      return s.all && names.length === 1 && names[0] === "all" ? "all" : names;
    }
    case "nums": {
      const items = typeof v === "string" ? v.split(",").map((x) => x.trim()) : Array.isArray(v) ? v : [v];
      const nums = items.map((x) => (typeof x === "string" && x !== "" ? Number(x) : x));
      if (!nums.every((x) => typeof x === "number" && Number.isFinite(x))) throw bad();
      return nums;
    }
    case "dict": {
      let d = v;
      if (typeof d === "string" && d.trim().startsWith("{")) {
        try {
          d = JSON.parse(d);
        } catch (e) {
          throw bad(` (${(e as Error).message})`);
        }
      }
      if (!isMapping(d)) throw bad();
      return d;
    }
    case "resume":
      if (typeof v === "boolean" || (typeof v === "string" && v !== "")) return v;
      throw bad();
  }
}

/** Whether an `unsupported` or `ignored` key holds its default (or null / empty): the feature stays off. */
export function isOff(v: unknown, def: unknown): boolean {
  if (v === null || v === undefined || v === "") return true;
  if (Array.isArray(v) && v.length === 0) return true;
  if (isMapping(v) && Object.keys(v).length === 0) return true;
  const b = typeof def === "boolean" ? asBool(v) : undefined;
  if (b !== undefined) return b === def;
  return JSON.stringify(v) === JSON.stringify(def) || (def === null && v === false);
}
