#!/usr/bin/env bash
# The checks that need a GPU, in under 5 minutes: the CUDA tests, then CPU-against-CUDA throughput.
#
#   benchmarks/gpu_check.sh                          # from anywhere; runs in the repository root
#   PYTHON=/path/to/python benchmarks/gpu_check.sh   # another interpreter (default: .venv/bin/python, else python3)
#   ITERATIONS=10 benchmarks/gpu_check.sh            # timed iterations per throughput row (default 5)
#
# Needs fastadapt installed in that interpreter (`pip install -e '.[dev]'`: the suites are entry points) and a
# CUDA device: without one it stops at once with an error instead of letting the CUDA tests skip. Steps:
#   1. the GPUs (nvidia-smi -L), torch's and CUDA's versions;
#   2. python -m pytest -m cuda (tests/test_device.py: a digits run trained on CUDA evaluates as on the CPU,
#      MAML's meta-gradient, the recommender, text-head and online paths on CUDA);
#   3. benchmarks/gpu_throughput.py: tasks/s of second-order MAML and ProtoNet on Omniglot-shaped Conv4
#      meta-batches, CPU and CUDA, every batching strategy, with the ratio to the CPU loop.
# Each step has its own time limit (`timeout`), so a hung step fails instead of outlasting the machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
ITERATIONS=${ITERATIONS:-5}

echo "== GPUs"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
else
    echo "nvidia-smi: not found"
fi

echo "== torch and CUDA ($PYTHON)"
"$PYTHON" - <<'EOF'
import sys

import torch

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    sys.exit(
        "gpu_check: CUDA is not available to torch (a CPU build, no driver or no GPU); the CUDA tests would only "
        "skip. Run this on a machine with a CUDA device and a CUDA build of torch."
    )
for i in range(torch.cuda.device_count()):
    print(f"cuda:{i}: {torch.cuda.get_device_name(i)}")
try:
    import fastadapt  # noqa: F401
except ImportError:
    sys.exit("gpu_check: fastadapt is not installed in this interpreter; run `pip install -e '.[dev]'` first")
EOF

echo "== CUDA tests"
timeout 180 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider

echo "== throughput: CPU against CUDA"
timeout 150 "$PYTHON" benchmarks/gpu_throughput.py --devices cpu,cuda --iterations "$ITERATIONS"

echo "== gpu_check: all passed"
