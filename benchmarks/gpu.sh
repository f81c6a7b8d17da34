#!/usr/bin/env bash
# GPU check in one command: Keras 3 on the JAX backend, synthetic tensors, no TensorFlow needed.
#   benchmarks/gpu.sh                 # full sizes; writes benchmarks/results/gpu.json
#   benchmarks/gpu.sh --tiny          # tiny sizes on the CPU in about a minute (CI); figures mean nothing
#   benchmarks/gpu.sh --out PATH ...  # any gpu_bench.py flag passes through
# PYTHON picks the interpreter (default: python3). Needs keras>=3 and jax (jax[cuda12] on a GPU).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
export KERAS_BACKEND=jax
# JAX grabs 75% of GPU memory up front by default; allocate as needed so a shared GPU is not starved.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
for arg in "$@"; do
  if [ "$arg" = "--tiny" ]; then export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"; fi
done
"$py" - <<'PY'
import importlib.util, sys
missing = [m for m in ("keras", "jax") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh needs {' and '.join(missing)}: pip install keras 'jax[cuda12]' (or 'jax[cpu]')")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (CPU run)"
exec "$py" "$here/gpu_bench.py" "$@"
