import assert from "node:assert/strict";
import { envArena } from "./executor.ts";

Deno.test("WHETSTONE_ONNX_ARENA: on or off for every session, unset for the executor's own choice, else an error", () => {
  const saved = Deno.env.get("WHETSTONE_ONNX_ARENA");
  try {
    Deno.env.delete("WHETSTONE_ONNX_ARENA");
    assert.equal(envArena(), undefined);
    Deno.env.set("WHETSTONE_ONNX_ARENA", "on");
    assert.equal(envArena(), true);
    Deno.env.set("WHETSTONE_ONNX_ARENA", "off");
    assert.equal(envArena(), false);
    Deno.env.set("WHETSTONE_ONNX_ARENA", "yes");
    assert.throws(() => envArena(), /WHETSTONE_ONNX_ARENA: expected on or off, got "yes"/);
  } finally {
    if (saved === undefined) Deno.env.delete("WHETSTONE_ONNX_ARENA");
    else Deno.env.set("WHETSTONE_ONNX_ARENA", saved);
  }
});
