import assert from "node:assert/strict";
import { collectGarbage, peakResidentBytes, resetPeakResident, residentBytes, trimHeap } from "./memory.ts";

const linux = Deno.build.os === "linux";

Deno.test({
  name: "memory: the resident set, its peak, and a collection that gives a dropped array back",
  ignore: !linux,
  fn: () => {
    let big: Float64Array | undefined = new Float64Array(64 * 2 ** 20 / 8).fill(1); // 64 MiB, touched
    const held = residentBytes()!;
    assert.ok(peakResidentBytes()! >= held, "the peak is at least the current resident set");
    big = undefined;
    assert.equal(big, undefined);
    assert.equal(collectGarbage(), true);
    trimHeap();
    const after = residentBytes()!;
    assert.ok(held - after > 32 * 2 ** 20, `expected the 64 MiB back, resident ${held} → ${after}`);
    assert.equal(resetPeakResident(), true);
    assert.ok(peakResidentBytes()! < held, "the reset peak forgets the array");
  },
});
