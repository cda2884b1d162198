/**
 * The shape of one row of the key table (`keys.ts`) and the type of the parsed arguments derived from the table:
 * adding a key is one row, and {@linkcode ArgsOf} gives its field in `TrainArgs`.
 *
 * A row is one of:
 * - `train` ({@linkcode T}) — a field of `TrainArgs`, type-checked and normalised (`values.ts`);
 * - `ignored` ({@linkcode I}) — accepted and without effect here; some print a note when set;
 * - `unsupported` ({@linkcode U}) — a feature Whetstone lacks: any value but LF's default is an error naming the key.
 *
 * Each key's {@linkcode effectOf} is "implemented" (a `train` key that acts as in LLaMA-Factory), "inert" (accepted,
 * changes nothing: `ignored` keys and `train` keys marked `inert`; listed in docs/inert_keys.md) or "error".
 * @module
 */

/** How a `train` key's value is checked. */
export type KeyKind =
  | "bool"
  | "int"
  | "num"
  | "str"
  /** A comma list or a YAML list of names → `string[]`. */
  | "list"
  /** A comma list or a YAML list of numbers → `number[]`. */
  | "nums"
  /** A mapping, or a JSON object text (as HF parses dict fields). */
  | "dict"
  /** `resume_from_checkpoint`: a path, true (the last checkpoint of output_dir) or false. */
  | "resume"
  /** One of these strings. */
  | readonly string[];

/** One row of the table. */
export interface KeySpec {
  use: "train" | "ignored" | "unsupported";
  /** LF's default (for `train` keys, the value when the key is absent). */
  def?: unknown;
  kind?: KeyKind;
  /** null is accepted (and kept) even though the default is not null. */
  nullable?: boolean;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive bounds. */
  gt?: number;
  lt?: number;
  /** Enum values LF accepts that Whetstone lacks yet. */
  lacking?: readonly string[];
  /** Enum spellings that mean another value (e.g. optimizer names). */
  aliases?: Readonly<Record<string, string>>;
  /** List keys: a lone "all" stays the string "all". */
  all?: boolean;
  /** `unsupported`: the feature, for the error. */
  what?: string;
  /** `ignored`: a note, printed as `key: note`, when the value differs from `def` (or a function deciding). */
  note?: string | ((value: unknown) => string | undefined);
  /** `ignored`: an error for values LF itself refuses in training. */
  reject?: (value: unknown) => string | undefined;
  /** Why the key changes nothing in Whetstone (docs/inert_keys.md); on a `train` row: parsed and kept, inert. */
  inert?: string;
}

/** What a key does in Whetstone (see the module doc). */
export type Effect = "implemented" | "inert" | "error";

/** A key's {@linkcode Effect}. */
export function effectOf(s: KeySpec): Effect {
  if (s.use === "unsupported") return "error";
  if (s.use === "ignored" || s.inert !== undefined) return "inert";
  return "implemented";
}

/** Options of a `train` row. */
export type Opts = Omit<KeySpec, "use" | "def" | "kind">;

/** A `train` row: checked as `kind`, `def` when absent. */
export const T = <const K extends KeyKind, const D, const O extends Opts = Record<never, never>>(
  kind: K,
  def: D,
  o?: O,
):
  & { use: "train"; kind: K; def: D }
  & O => ({ use: "train", kind, def, ...o } as { use: "train"; kind: K; def: D } & O);

/** An `unsupported` row: an error naming the key (and `what`) unless it holds `def`. */
export const U = (def: unknown, what?: string): KeySpec & { use: "unsupported" } => ({ use: "unsupported", def, what });

/** An `ignored` row, with an optional note for values LF would act on (and `why`, for docs/inert_keys.md). */
export const I = (def?: unknown, note?: KeySpec["note"], why?: string): KeySpec & { use: "ignored" } => ({
  use: "ignored",
  def,
  note,
  ...(why === undefined ? {} : { inert: why }),
});

/** `ignored` rows without notes; `why` they change nothing goes to docs/inert_keys.md. */
export const ignore = <const K extends string>(why: string, ...keys: K[]): Record<K, KeySpec & { use: "ignored" }> =>
  Object.fromEntries(keys.map((k) => [k, { ...I(), inert: why }])) as Record<K, KeySpec & { use: "ignored" }>;

/** `unsupported` rows of one feature, key → LF's default. */
export const lack = <const D extends Record<string, unknown>>(
  what: string,
  defs: D,
): { [k in keyof D]: KeySpec & { use: "unsupported" } } =>
  Object.fromEntries(Object.entries(defs).map(([k, d]) => [k, U(d, what)])) as {
    [k in keyof D]: KeySpec & { use: "unsupported" };
  };

/** The note of precision keys that Whetstone ignores. */
export const F32 = (v: unknown): string | undefined =>
  v === true ? "Whetstone trains in f32 (f32 master weights and compute); ignored" : undefined;

declare const VALUE: unique symbol;
/** A `train` row whose parsed type is `V` rather than the kind's (e.g. resolved after parsing: `lora_alpha`). */
export const typed = <V>() => <S extends KeySpec>(spec: S): S & { readonly [VALUE]: V } =>
  spec as S & { readonly [VALUE]: V };

type Lacking<S> = S extends { lacking: readonly (infer L)[] } ? L : never;
type KindValue<S> = S extends { kind: infer K } ? K extends "bool" ? boolean
  : K extends "int" | "num" ? number
  : K extends "str" ? string
  : K extends "list" ? S extends { all: true } ? "all" | string[] : string[]
  : K extends "nums" ? number[]
  : K extends "dict" ? Record<string, unknown>
  : K extends "resume" ? string | boolean | null
  : K extends readonly (infer E)[] ? Exclude<E, Lacking<S>>
  : never
  : never;
type OrNull<S> = S extends { nullable: true } ? null : S extends { def: null } ? null : never;

/** The parsed type of a `train` row. */
export type ValueOf<S> = S extends { readonly [VALUE]: infer V } ? V : KindValue<S> | OrNull<S>;

/** The parsed arguments of a table: one field per `train` row. */
export type ArgsOf<Table> = {
  -readonly [K in keyof Table as Table[K] extends { use: "train" } ? K : never]: ValueOf<Table[K]>;
};

/** The defaults of a table's `train` rows (LF's defaults), as parsed arguments. */
export function defaultsOf<Table extends Record<string, KeySpec>>(table: Table): ArgsOf<Table> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table)) if (spec.use === "train") out[key] = structuredClone(spec.def);
  return out as ArgsOf<Table>;
}
