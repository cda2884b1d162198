#!/usr/bin/env bash
# The matmul variants' and device probes' checks for a machine with a real GPU (e.g. the H200 lent
# through the device tool), from the repository root, in about 2-4 minutes:
#   1. bench/gpu_probe.ts: adapter, features, limits, shader-f16 / subgroup known-answer probes, each
#      matmul variant checked and timed once (JSON lines);
#   2. the matmul kernel tests, the variants' ones included (the f16 / subgroup runs and conformance
#      cases run only where the probes passed, else they say SKIP);
#   3. the tuner on 2048³ f32 and f16-stored operands (nn, nt, tn), variants among the candidates.
# Logs and the tuning file go to $OUT (else /tmp/gpu_check).
# Needs a deno binary: $DENO, else node_modules/.bin/deno, else .denobin/deno.xz (92 MB unpacked, too
# big to carry as is: `mkdir -p .denobin && xz -T2 -c node_modules/deno/deno > .denobin/deno.xz`,
# ~30 MB, with /.denobin/ in .git/info/exclude), and a Vulkan loader (libvulkan.so.1) with the GPU's
# driver; on the NVIDIA machines the ICD file is picked up below.
set -u
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
deno=${DENO:-}
if [ -z "$deno" ]; then
  if [ -x node_modules/.bin/deno ]; then
    deno=node_modules/.bin/deno
  elif [ -f .denobin/deno.xz ]; then
    xz -dc .denobin/deno.xz >/tmp/deno && chmod +x /tmp/deno && deno=/tmp/deno
  else
    echo "no deno: set DENO, or carry .denobin/deno.xz" >&2
    exit 2
  fi
fi
ldconfig -p | grep -q libvulkan.so.1 || echo "warning: no libvulkan.so.1 in the linker cache: WebGPU will find no adapter" >&2
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$icd}
export WHETSTONE_CACHE=$out/cache NO_COLOR=1
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  cat "$out/$name.log"
  echo "== $name rc=$rc"
}
step probe 60 "$deno" run -A --unstable-webgpu bench/gpu_probe.ts
step tests 240 "$deno" test -A --unstable-webgpu --unstable-kv engine/exec/op_tests/kernel_matmul_variants_test.ts \
  engine/exec/op_tests/kernel_matmul_test.ts
step tune 240 "$deno" run -A --unstable-webgpu engine/exec/tuner.ts 2048 --f16 --target-ms=30
cp "$out/cache/tuning.json" "$out/tuning.json" 2>/dev/null
true
