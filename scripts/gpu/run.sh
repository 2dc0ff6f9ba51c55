#!/usr/bin/env bash
# Runs on a lent GPU machine, from the bundle that scripts/gpu/build.sh wrote (gpu-bundle/), and
# is meant to take under 8 minutes there (not yet timed: no GPU has been lent): the CUDA tests (parity with the references, fused = tensor ops), a
# device-to-device copy through PyTorch (the HBM bound), the step benchmark on CUDA and WGPU
# with the torch/optax peers on the GPU, and a summary. Writes gpu-report.md, BENCHMARKS.md, the
# benchmark's JSON and the logs to $OUT (the device tool's folder) or ./gpu-report.
#
#   gpu-bundle/run.sh [--dry-run] [--out DIR]
#
# --dry-run runs the same plumbing on a machine without a GPU: Flex instead of CUDA and WGPU,
# the tiny parameter set, the CPU tests, the copy and the peers on the CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dry_run=false
out=${OUT:-$PWD/gpu-report}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=true ;;
    --out) out=$2; shift ;;
    *) echo "usage: $0 [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
python=${PYTHON:-python3}
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The binaries, packed by build.sh.
bin=$(mktemp -d)/bin
tar -C "$(dirname "$bin")" -xJf "$here/bin.tar.xz"
start=$(date +%s)
report="$out/gpu-report.md"

if $dry_run; then
  device=cpu
  tests=(flex_matches_references flex_fused_step_matches_the_tensor_op_step)
  bench=(--backends flex --sets tiny --samples 2 --warmup 1 --triad-len 1048576)
  copy_elements=$((1 << 24))
else
  device=cuda
  tests=(--ignored cuda)
  backends=cuda
  # WGPU on the GPU through Vulkan, where the machine has a Vulkan loader.
  if ldconfig -p | grep -q 'libvulkan\.so\.1'; then backends=cuda,wgpu; fi
  bench=(--backends "$backends" --sets transformer-like,resnet-like,many-small,large --samples 10)
  copy_elements=$((1 << 28))
fi

# torch-optimizer, the NovoGrad peer, from the bundle's wheels (no network there).
if [ -d "$here/wheels" ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/novograd-site \
    "$here"/wheels/*.whl
  export PYTHONPATH="/tmp/novograd-site${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  echo "# burn-novograd on a GPU"
  echo
  echo "- Date: $(date -u +%F\ %T) UTC; dry run: $dry_run"
  if command -v nvidia-smi >/dev/null; then
    echo "- Device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
  else
    echo "- Device: no nvidia-smi on this machine"
  fi
} >"$report"

echo "== tests (${tests[*]})"
set +e
"$bin/novograd-tests" --test-threads=1 --nocapture "${tests[@]}" 2>&1 | tee "$out/tests.log"
tests_status=${PIPESTATUS[0]}
set -e

echo "== device-to-device copy ($device)"
"$python" - "$device" "$copy_elements" >"$out/copy.json" <<'PY'
import json, sys, time
device, elements = sys.argv[1], int(sys.argv[2])
try:
    import torch
except ImportError as error:
    if device == "cuda":
        raise
    # A dry run on a machine without PyTorch: the report says so.
    print(json.dumps({"device": device, "gb_per_s": None, "missing": str(error)}))
    sys.exit()
source = torch.rand(elements, device=device)
target = torch.empty_like(source)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
for _ in range(3):
    target.copy_(source)
sync()
repeats = 20
start = time.perf_counter()
for _ in range(repeats):
    target.copy_(source)
sync()
seconds = (time.perf_counter() - start) / repeats
print(json.dumps({"device": device, "bytes": 2 * 4 * elements, "gb_per_s": 2 * 4 * elements / seconds / 1e9}))
PY
cat "$out/copy.json"

echo "== step benchmark (${bench[*]})"
"$bin/novograd-benches" "${bench[@]}" --no-e2e --python "$python" \
  --peers-device "$device" --peers-script "$here/step.py" --out "$out/BENCHMARKS.md" \
  2>&1 | tee "$out/bench.log"

echo "== summary"
"$python" - "$out" "$tests_status" >>"$report" <<'PY'
import json, re, sys
out, tests_status = sys.argv[1], int(sys.argv[2])
copy = json.load(open(f"{out}/copy.json"))
bench = json.load(open(f"{out}/docs/benchmarks/benchmarks.json"))
tests = open(f"{out}/tests.log").read()
print(f"- Tests: {'passed' if tests_status == 0 else 'FAILED (exit %d)' % tests_status}; "
      + "; ".join(re.findall(r"^test result: .*$", tests, re.M)))
for line in re.findall(r"^.*(?:max relative error|largest relative difference).*$", tests, re.M):
    print(f"  - {line}")
if copy["gb_per_s"] is None:
    print(f"- Copy through PyTorch on {copy['device']}: not measured ({copy['missing']})")
else:
    print(f"- Copy through PyTorch on {copy['device']}: {copy['gb_per_s']:.0f} GB/s (read + write)")
for backend in bench["backends"]:
    steps = {(s["set"], s["optimizer"]): s for s in backend["steps"]}
    print(f"\n## {backend['backend']} ({backend['fused_path'] or 'tensor ops'})\n")
    print("| set | parameters | NovoGrad ms | × AdamW | × SGD | × tensor ops | HBM bound "
          "| multi-tensor ms | × AdamW |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (set_name, optimizer), step in steps.items():
        if optimizer != "novograd":
            continue
        ms = step["stats"]["median_ms"]
        ratio = lambda other: (f"{ms / steps[(set_name, other)]['stats']['median_ms']:.2f}"
                               if (set_name, other) in steps else "—")
        # The step's least traffic, 20 B per parameter, at the copy's bandwidth.
        bound = "—"
        if copy["gb_per_s"] is not None:
            bound = f"{20 * step['parameters'] / (copy['gb_per_s'] * 1e9) * 1e3 / ms:.0%}"
        multi = steps.get((set_name, "novograd-multi-tensor"))
        multi_ms = multi["stats"]["median_ms"] if multi else None
        multi_adamw = (f"{multi_ms / steps[(set_name, 'adamw')]['stats']['median_ms']:.2f}"
                       if multi and (set_name, "adamw") in steps else "—")
        print(f"| {set_name} | {step['parameters']} | {ms:.3f} | {ratio('adamw')} | {ratio('sgd')} "
              f"| {ratio('novograd-tensor-ops')} | {bound} "
              f"| {f'{multi_ms:.3f}' if multi else '—'} | {multi_adamw} |")
peers = bench["peers"].get("Ok")
if peers is None:
    print(f"\nPeers: not measured ({bench['peers'].get('Err')})")
else:
    novograd = [s for b in bench["backends"][:1] for s in b["steps"]
                if s["set"] == "transformer-like" and s["optimizer"] == "novograd"]
    print("\nPeers on the transformer-like set, same device:")
    for name, figures in sorted(peers["peers"].items()):
        if "median_ms" in figures:
            versus = f" (ours ÷ peer: {novograd[0]['stats']['median_ms'] / figures['median_ms']:.2f})" if novograd else ""
            print(f"- {name}: {figures['median_ms']:.3f} ms{versus}")
        else:
            print(f"- {name}: not measured ({figures.get('missing', '?')})")
PY
echo "- Minutes: $(( ($(date +%s) - start + 59) / 60 ))" >>"$report"
cat "$report"
exit "$tests_status"
