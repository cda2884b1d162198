/**
 * The family lists of README.md and docs/library.md are the code's: each names {@link FAMILIES} in order, so a family
 * added to engine/nn/config.ts without the docs (or the reverse) fails here.
 */
import assert from "node:assert/strict";
import { FAMILIES } from "./config.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("README.md and docs/library.md list exactly the supported model families", async () => {
  const list = FAMILIES.join(", ");
  for (const f of ["README.md", "docs/library.md"]) {
    const text = (await Deno.readTextFile(`${ROOT}${f}`)).replace(/\s*\n\s*/g, " ");
    assert.ok(text.includes(`: ${list} —`), `${f} must list the families as "${list}"`);
  }
});
