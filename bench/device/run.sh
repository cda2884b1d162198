#!/usr/bin/env bash
# The device check (docs/benchmarks.md#on-a-gpu-machine): on a machine with a real GPU and nothing to download from,
# unpack the carried deno binary and npm cache, make Vulkan's loader see the GPU's driver, probe what Deno's WebGPU
# sees, then run the op conformance suite and the named benches there, saving everything under $OUT.
#
# Carried (ignored) inputs, made by bench/device/pack.sh: .dev/deno.xz, .dev/denodir.tar.xz, .gl/*.deb (Vulkan's
# loader and glvnd: libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2).
# Usage: bash bench/device/run.sh [bench ...]   (default: matmul dispatch model train)
# ONNX Runtime's native library is not carried (45 MB), so the ONNX cases fail there and are left out of the summary.
# Stage time limits: WHETSTONE_DEVICE_TEST_S (conformance, default 150), WHETSTONE_DEVICE_TUNE_S (120),
# WHETSTONE_DEVICE_BENCH_S (each bench, 120). At most 8 files come back from $OUT: keep it to these.
set -u
OUT=${OUT:-/tmp/whetstone-device}
mkdir -p "$OUT"
log() { echo "== $(date +%T) $*" | tee -a "$OUT/steps.log"; }
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(matmul dispatch model train)

log "unpack"
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
mkdir -p /tmp/wd/bin
xz -dc .dev/deno.xz >/tmp/wd/bin/deno && chmod +x /tmp/wd/bin/deno
tar -xJf .dev/denodir.tar.xz -C /tmp/wd
export DENO_DIR=/tmp/wd/denodir PATH=/tmp/wd/bin:$PATH DENO_NO_UPDATE_CHECK=1
deno --version | head -1 | tee -a "$OUT/steps.log"

log "gpu"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$OUT/steps.log"
ldconfig -p | grep -i libvulkan | tee -a "$OUT/steps.log"
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -e "$icd" ]; then
    export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
    break
  fi
done
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -e "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-none} __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-none}" |
  tee -a "$OUT/steps.log"
if [ -n "${VK_DRIVER_FILES:-}" ]; then
  cat "$VK_DRIVER_FILES" | tee -a "$OUT/steps.log"
  lib=$(grep -o '"library_path"[^,]*' "$VK_DRIVER_FILES" | sed 's/.*: *"//; s/"$//')
  (ldd "$lib" 2>&1 || ldd "$(ldconfig -p | grep -m1 "$lib" | sed 's/.*=> //')" 2>&1) | grep -E "not found|=>" |
    head -20 >>"$OUT/steps.log"
fi

log "probe"
VK_LOADER_DEBUG=error,warn,info timeout 60 deno run -A --cached-only --unstable-webgpu bench/device/probe.ts \
  >"$OUT/probe.jsonl" 2>/tmp/wd/vulkan_loader.log
cat "$OUT/probe.jsonl"
grep -iE "error|fail|warn|nvidia" /tmp/wd/vulkan_loader.log | head -30 | tee -a "$OUT/steps.log"
# The feature probes (shader-f16, subgroups: known-answer kernels) and each matmul variant checked and timed once.
timeout 90 deno run -A --cached-only --unstable-webgpu bench/gpu_probe.ts 2>&1 | tee -a "$OUT/probe.jsonl"
export WHETSTONE_CACHE=$OUT/cache NO_COLOR=1

log "conformance"
timeout "${WHETSTONE_DEVICE_TEST_S:-150}" deno test -A --cached-only --unstable-webgpu --unstable-kv \
  engine/exec/conformance_test.ts engine/exec/op_tests/ engine/exec/webgpu_test.ts engine/exec/tuner_test.ts \
  engine/exec/webgpu_segmented_test.ts engine/exec/webgpu_memory_test.ts engine/train/segmented_memory_test.ts \
  >"$OUT/conformance.log" 2>&1
echo "conformance exit $?" | tee -a "$OUT/steps.log"
grep -E "passed .* failed" "$OUT/conformance.log" | tail -1 | tee -a "$OUT/steps.log"
echo "failed, other than onnx (whose native library is not carried):" | tee -a "$OUT/steps.log"
grep -E "FAILED" "$OUT/conformance.log" | grep -v -i onnx | sed 's/\x1b\[[0-9;]*m//g' | sort -u | head -40 | tee -a "$OUT/steps.log"

log "tune"
# The matmul tuner at 2048³ (f32 and f16-stored operands, the variants the adapter passed among the candidates); the
# benches below read its cache ($WHETSTONE_CACHE/tuning.json, brought back with the rest).
timeout "${WHETSTONE_DEVICE_TUNE_S:-120}" deno run -A --cached-only --unstable-webgpu engine/exec/tuner.ts 2048 --f16 \
  --target-ms=30 >"$OUT/tune.log" 2>&1
echo "tune exit $?" | tee -a "$OUT/steps.log"
tail -5 "$OUT/tune.log"

export WHETSTONE_BENCH_EXECUTORS=webgpu WHETSTONE_SCALE_EXECUTORS=${WHETSTONE_SCALE_EXECUTORS:-webgpu} \
  WHETSTONE_TORCH_PYTHON=${WHETSTONE_TORCH_PYTHON:-python3}
for b in "${benches[@]}"; do
  log "bench $b"
  timeout "${WHETSTONE_DEVICE_BENCH_S:-120}" deno run -A --cached-only --unstable-webgpu bench/main.ts "$b" --json \
    >>"$OUT/bench.jsonl" 2>>"$OUT/bench.err"
  echo "bench $b exit $?" | tee -a "$OUT/steps.log"
done
tail -c 3000 "$OUT/bench.err" 2>/dev/null
log "done"
