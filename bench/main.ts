/**
 * `deno task bench [name ...] [--json]`: runs the named benchmarks (all when none is named).
 * With `--json` every measurement is one JSON object per line.
 * @module
 */
import { type Bench, report } from "./report.ts";
import { benches } from "./registry.ts";

const args = Deno.args.filter((a) => a !== "--json");
const json = Deno.args.includes("--json");
const unknown = args.filter((a) => !benches.some((b) => b.name === a));
if (unknown.length) {
  console.error(`unknown bench ${unknown.join(", ")}; available: ${benches.map((b) => b.name).join(", ")}`);
  Deno.exit(2);
}
const chosen: Bench[] = args.length ? benches.filter((b) => args.includes(b.name)) : benches;
for (const b of chosen) {
  if (!json) console.log(`# ${b.name}: ${b.description}`);
  for await (const m of b.run()) report(m, json);
}
