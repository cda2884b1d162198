/**
 * The zod schemas of what the API takes and answers, shared by the routes (request validation, routes/validate.ts),
 * the OpenAPI document (routes/openapi.ts) and the typed client (notebooks/whetstone.ts). Schemas with an `id` are
 * the document's components. The engine's types they mirror (SessionPlan, StepRecord, EvalRecord, PreviewRow) are
 * checked against them at compile time at the end of this file.
 * @module
 */
import { z } from "../deps.ts";
import type { EvalRecord, KeySpec, PreviewRow, SessionPlan, StepRecord, TrainerLogRecord } from "../engine/mod.ts";
import { KEYS } from "../engine/mod.ts";

/** A metric: a number, or null where it was not finite (JSON has no NaN). */
const metric = z.number().nullable();

/** The body of every error answer but OpenAI's. */
export const ErrorBody = z.object({
  error: z.string(),
  field: z.string().optional().describe("the request field at fault"),
  problems: z.array(z.string()).optional().describe("every problem of bad training arguments"),
}).meta({ id: "Error" });

/**
 * OpenAI's error body (the errors of `/v1/chat/completions` and `/v1/models`, except the key check's 401 and a
 * declared body size's 413, which every route answers as {@link ErrorBody}).
 */
export const OpenAiErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.enum(["invalid_request_error", "server_error"]),
    param: z.string().nullable(),
    code: z.null(),
  }),
}).meta({ id: "OpenAiError" });

/** The JSON schema of a training key, from its row of the key table. */
function keySchema(spec: KeySpec): Record<string, unknown> {
  const k = spec.kind;
  const out: Record<string, unknown> = Array.isArray(k) ? { enum: [...k] } : {
    bool: { type: "boolean" },
    int: { type: "integer" },
    num: { type: "number" },
    str: { type: "string" },
    list: { description: "a comma list or a list", anyOf: [{ type: "string" }, { type: "array", items: {} }] },
    nums: { description: "a comma list or a list of numbers", anyOf: [{ type: "string" }, { type: "array" }] },
    dict: { description: "a mapping or its JSON text", anyOf: [{ type: "object" }, { type: "string" }] },
    resume: { description: "a checkpoint folder, or true: the last of output_dir", type: ["string", "boolean"] },
  }[k as string] ?? {};
  if (spec.min !== undefined) out.minimum = spec.min;
  if (spec.max !== undefined) out.maximum = spec.max;
  if (spec.gt !== undefined) out.exclusiveMinimum = spec.gt;
  if (spec.lt !== undefined) out.exclusiveMaximum = spec.lt;
  if (spec.def !== undefined && spec.def !== null) out.default = spec.def;
  return out;
}

/**
 * LLaMA-Factory's training arguments, as the YAML takes them: one property per key Whetstone trains with, described
 * from the key table that the server's parser (parseTrainArgs) checks them with (engine/config/keys.ts), so the two
 * cannot drift. Only `config` is checked here: the parser reports every problem at once (with "did you mean"), as
 * a 400 naming the first key. LF's other keys are accepted (without effect, or refused naming the missing feature).
 */
export const TrainArgsBody = z.object({
  config: z.string().nullish().describe("a YAML (or JSON) file under the roots whose keys the others override"),
  runner: z.enum(["whetstone", "llamafactory"]).nullish().describe(
    "POST /sessions: who trains it (default whetstone; llamafactory runs llamafactory-cli train)",
  ),
  ...Object.fromEntries(
    Object.entries(KEYS).filter(([, s]) => s.use === "train").map((
      [name, s],
    ) => [name, z.unknown().optional().meta(keySchema(s))]),
  ),
}).catchall(z.unknown()).meta({
  id: "TrainArgs",
  description: "LLaMA-Factory's YAML keys; checked by the server's argument parser (errors name the key)",
});

/** What a session will do and what it needs. */
export const Plan = z.object({
  stage: z.string(),
  finetuning_type: z.string(),
  executor: z.string(),
  model_family: z.string(),
  parameters: z.int(),
  trainable_parameters: z.int(),
  trainable_percent: z.number(),
  train_records: z.int(),
  eval_records: z.int(),
  total_steps: z.int(),
  steps_per_epoch: z.int(),
  per_device_train_batch_size: z.int(),
  gradient_accumulation_steps: z.int(),
  max_length: z.int(),
  memory: z.object({ parameters: z.number(), optimizer: z.number(), activations: z.number(), total: z.number() })
    .optional().describe("planned peak memory in bytes"),
}).meta({ id: "SessionPlan" });

/** The part of a plan known before a llamafactory run has logged (LF computes the rest). */
export const PartialPlan = Plan.partial().meta({
  id: "PartialSessionPlan",
  description: 'llamafactory runs: stage, finetuning_type, executor ("llamafactory"), batch sizes, cutoff_len',
});

/** A session's status snapshot. */
export const State = z.object({
  global_step: z.int(),
  total_steps: z.int(),
  epoch: z.number(),
  total_tokens: z.int(),
  busy: z.string().nullable().describe("the operation running now"),
  finished: z.boolean(),
  last_loss: metric,
  output_dir: z.string(),
}).meta({ id: "SessionState" });

const logFields = {
  current_steps: z.int(),
  total_steps: z.int(),
  loss: metric.optional(),
  eval_loss: metric.optional(),
  predict_loss: metric.optional(),
  reward: metric.optional(),
  accuracy: metric.optional(),
  lr: z.number().optional(),
  epoch: z.number().optional(),
  percentage: z.number(),
  elapsed_time: z.string(),
  remaining_time: z.string(),
  throughput: z.number().optional(),
  total_tokens: z.int().optional(),
  vram_allocated: z.number().optional(),
  vram_reserved: z.number().optional(),
};

/** A trainer_log.jsonl line. */
export const LogEntry = z.object(logFields).catchall(metric).meta({
  id: "TrainerLogEntry",
  description: "a trainer_log.jsonl line, with the stage's metrics (`rewards/accuracies`, `eval_accuracy`, ...)",
});

/** One optimizer step. */
export const Step = z.object({
  ...logFields,
  grad_norm: metric.optional(),
  lr: z.number(),
  epoch: z.number(),
  throughput: z.number(),
  total_tokens: z.int(),
}).catchall(metric).meta({
  id: "StepRecord",
  description: "one optimizer step, with the stage's metrics (`rewards/chosen`, `logps/rejected`, `kl`, ...)",
});

/** One evaluation. */
export const Eval = z.object({ ...logFields, eval_loss: metric, perplexity: metric.optional(), epoch: z.number() })
  .catchall(metric).meta({
    id: "EvalRecord",
    description: "one evaluation: eval_loss, perplexity (pt, sft) or LF's eval metrics (`eval_rewards/…`, ...)",
  });

/** A message of a previewed example. */
const Message = z.object({ role: z.string(), content: z.string() });

/** One previewed example. */
export const PreviewRowSchema = z.object({
  index: z.int(),
  source: z.object({ dataset: z.string(), file: z.string(), row: z.int() }),
  system: z.string(),
  tools: z.string(),
  messages: z.array(Message),
  ktoTag: z.boolean().optional(),
  views: z.array(z.object({
    name: z.enum(["input", "chosen", "rejected", "kl"]),
    spans: z.array(z.object({ text: z.string(), ids: z.array(z.int()), trained: z.boolean() })),
    length: z.int(),
    trainedTokens: z.int(),
  })),
  dropped: z.string().optional().describe("why the example would be dropped (no views then)"),
}).meta({ id: "PreviewRow" });

/** A session as listed. */
export const SessionInfo = z.object({
  id: z.string(),
  runner: z.enum(["whetstone", "llamafactory"]).describe("Whetstone's engine, or llamafactory-cli"),
  status: z.enum(["ready", "running", "finished", "stopped"]),
  busy: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  output_dir: z.string(),
  model_name_or_path: z.unknown(),
  stage: z.unknown(),
  finetuning_type: z.unknown(),
  global_step: z.int(),
  total_steps: z.int(),
  last_loss: metric,
}).meta({ id: "SessionInfo" });

const stop = z.union([z.string(), z.array(z.string()).max(16)], {
  error: (iss) => `expected a string or a list of strings (16 at most), got ${JSON.stringify(iss.input)}`,
}).nullish();

/** A chat turn as OpenAI's API takes it (LF's rules on the order of turns are checked after, in messages.ts). */
const ChatMessage = z.object({
  role: z.enum(["system", "user", "assistant", "function", "tool"]),
  content: z.union([z.string(), z.array(z.record(z.string(), z.unknown()))]).nullish()
    .describe('a string, or a list of {"type": "text", "text": ...} parts'),
  tool_calls: z.array(z.object({ function: z.object({ name: z.string(), arguments: z.unknown() }) })).nullish(),
}).meta({ id: "ChatMessage" });

/** A conversation: a non-empty list of turns. */
export const Messages = z.array(ChatMessage, { error: (iss) => `expected a list of messages, got ${typeof iss.input}` })
  .min(1, { error: "Invalid length: expected a non-empty list of messages" })
  .describe("an optional system message, then user/assistant turns alternating, ending with a user (or tool) turn");

/** OpenAI's tool definitions. */
export const Tools = z.array(z.object({ type: z.string().optional(), function: z.record(z.string(), z.unknown()) }))
  .nullish();

/** A session's generation request (LF's GeneratingArguments names). */
export const GenerateBody = z.object({
  messages: Messages,
  tools: Tools,
  do_sample: z.boolean().nullish(),
  temperature: z.number().min(0).nullish().describe("0: greedy"),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.int().min(0).nullish(),
  max_new_tokens: z.int().min(1).nullish(),
  repetition_penalty: z.number().gt(0).nullish(),
  stop,
  seed: z.int().min(0).nullish(),
});

/** A session's predict request: how many eval examples, and LF's GeneratingArguments. */
export const PredictBody = z.strictObject({
  eval_dataset: z.union([z.string(), z.array(z.string())]).nullish()
    .describe("dataset names in dataset_dir (default: the session's eval_dataset)"),
  max_samples: z.int().min(1).nullish().describe("examples at most (default: the session's max_samples)"),
  max_new_tokens: z.int().min(1).nullish().describe("default 1024 (LF's)"),
  do_sample: z.boolean().nullish().describe("default true (LF's)"),
  temperature: z.number().gt(0).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.int().min(0).nullish(),
  repetition_penalty: z.number().gt(0).nullish(),
  per_device_eval_batch_size: z.int().min(1).nullish(),
  seed: z.int().min(0).nullish(),
});

/** OpenAI's chat completion request, the fields LF reads. */
export const ChatCompletionBody = z.object({
  model: z.string().describe("a session id, or the served model"),
  messages: Messages,
  tools: Tools,
  do_sample: z.boolean().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.int().min(1).max(16).nullish(),
  presence_penalty: z.number().gt(0).nullish().describe("used as repetition_penalty (LLaMA-Factory's rule)"),
  max_tokens: z.int().min(1).nullish(),
  max_completion_tokens: z.int().min(1).nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.object({
    include_usage: z.boolean().nullish().describe("a last chunk with `choices: []` and the usage (others: usage null)"),
  }).nullish(),
  seed: z.int().min(0).nullish(),
  top_k: z.int().min(0).nullish().describe("not OpenAI's (as vLLM takes it): keep the k most likely tokens"),
  repetition_penalty: z.number().gt(0).nullish().describe("not OpenAI's (as vLLM takes it); over presence_penalty"),
});

const Usage = z.object({ prompt_tokens: z.int(), completion_tokens: z.int(), total_tokens: z.int() });

/** OpenAI's chat completion answer. */
export const ChatCompletion = z.object({
  id: z.string(),
  object: z.literal("chat.completion"),
  created: z.int(),
  model: z.string(),
  choices: z.array(z.object({
    index: z.int(),
    message: z.object({
      role: z.literal("assistant"),
      content: z.string().nullable(),
      tool_calls: z.array(z.object({
        id: z.string(),
        type: z.literal("function"),
        function: z.object({ name: z.string(), arguments: z.string() }),
      })).optional(),
    }),
    finish_reason: z.enum(["stop", "length", "tool_calls"]),
  })),
  usage: Usage,
}).meta({ id: "ChatCompletion" });

/** A session's generation answer. */
export const Generated = z.object({
  id: z.string(),
  text: z.string(),
  finish_reason: z.enum(["stop", "length"]),
  usage: Usage,
});

// Compile-time checks: the engine's records fit the schemas that document them (a field renamed or retyped in the
// engine breaks the build here, not a client).
type Known<T> = { [K in keyof T as string extends K ? never : K]: T[K] };
type Fits<A, B> = [A] extends [B] ? true : false;
const fits = <_ extends true>() => {};
fits<Fits<SessionPlan, z.output<typeof Plan>>>();
fits<Fits<StepRecord, Known<z.output<typeof Step>>>>();
fits<Fits<EvalRecord, Known<z.output<typeof Eval>>>>();
fits<Fits<TrainerLogRecord, Known<z.output<typeof LogEntry>>>>();
fits<Fits<PreviewRow, z.output<typeof PreviewRowSchema>>>();
