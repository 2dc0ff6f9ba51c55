#!/usr/bin/env bash
# Builds, on this (CPU) machine, what a lent GPU machine runs: that machine has the CUDA toolkit
# and PyTorch but no Rust and no package registry, and a call carries at most 64 MiB. Writes
# gpu-bundle/ (git-ignored; name it in the device call's `carry`):
#   bin.tar.xz           bin/novograd-tests, the integration tests with CUDA (reference parity,
#                        fused = tensor ops), and bin/novograd-benches, the step benchmark with
#                        CUDA and WGPU: stripped, 150-160 MB each (cubecl-cuda links LLVM
#                        statically), packed with one 384 MiB xz dictionary so that the second
#                        binary costs little beside the first; run.sh unpacks them
#   lib/                 the shared libraries they need that the GPU machine lacks
#   run.sh, step.py      the GPU-side script (scripts/gpu/run.sh) and the torch/optax peers
#   wheels/              torch-optimizer (the NovoGrad peer; the GPU machine's Python lacks it)
# and fails if the bundle weighs more than 60 MiB. Usage: scripts/gpu/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=gpu-bundle
limit=$((60 * 1024 * 1024))

# shellcheck source=.ci/cuda-offline.sh
source .ci/cuda-offline.sh
features=(--features novograd-tests/cuda,novograd-benches/cuda,novograd-benches/wgpu)
# Both in one cargo call: one feature resolution, one build of Burn.
json=$(cargo build --release -p novograd-benches -p novograd-tests --tests --bins \
  "${features[@]}" --message-format=json-render-diagnostics)
executable() { # the executable of target $1 of kind $2, built as a test harness or not ($3)
  jq -r --arg name "$1" --arg kind "$2" --argjson harness "$3" \
    'select(.reason == "compiler-artifact" and .target.name == $name
            and (.target.kind | index($kind)) and .profile.test == $harness
            and .executable != null) | .executable' \
    <<<"$json" | tail -n 1
}
tests=$(executable integration test true)
# `--tests` also builds the bench's own unit tests as a binary of kind `bin`: not that one.
benches=$(executable novograd-benches bin false)
rm -rf "$bundle"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$bundle/lib" "$staging/bin"
cp "$tests" "$staging/bin/novograd-tests"
cp "$benches" "$staging/bin/novograd-benches"
strip "$staging"/bin/*
cp scripts/gpu/run.sh benches/peers/step.py "$bundle/"
# Pure-Python wheels from PyPI (a package registry): installed there without network.
python3 -m pip download -q --no-deps --only-binary=:all: -d "$bundle/wheels" \
  torch-optimizer==0.3.0 pytorch-ranger==0.1.1

# Libraries the binaries load that a stock GPU machine does not have: everything `ldd` resolves
# outside the C runtime (glibc, libgcc_s, libstdc++) and the NVIDIA driver, which the GPU machine
# brings. libcuda and Vulkan are loaded at run time (dlopen) and do not show here.
base='^(linux-vdso|/lib64/ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libgcc_s\.so|libstdc\+\+\.so)'
for binary in "$staging"/bin/*; do
  ldd "$binary" | awk '$3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    if ! grep -Eq "$base" <<<"$name"; then
      cp -L "$path" "$bundle/lib/$name"
    fi
  done
done
if [ -n "$(ls "$bundle/lib")" ]; then strip --strip-unneeded "$bundle"/lib/* 2>/dev/null || true; fi
du -b "$staging"/bin/* | awk '{ printf "  %8.1f MiB  %s (stripped, before packing)\n", $1 / 1048576, $2 }'
# One xz stream, single-threaded, with a dictionary larger than a binary: the second binary is
# mostly the first one's LLVM and Burn. Unpacking needs 384 MiB of memory.
tar -C "$staging" -cf - bin | xz -T1 --lzma2=preset=9e,dict=384MiB >"$bundle/bin.tar.xz"

total=$(du -sb "$bundle" | cut -f1)
echo "gpu-bundle:"
(cd "$bundle" && du -b bin.tar.xz lib/* wheels/* run.sh step.py 2>/dev/null | sort -k2 | awk '{ printf "  %8.1f MiB  %s\n", $1 / 1048576, $2 }')
printf '  %8.1f MiB  in all (limit 60 MiB)\n' "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -gt "$limit" ]; then
  echo "gpu-bundle is over 60 MiB: it cannot travel to the GPU machine" >&2
  exit 1
fi
