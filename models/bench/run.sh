#!/usr/bin/env bash
# The component detector benchmark: the Rust runtime per stage (criterion,
# agent/benches/detector.rs) and Python onnxruntime on the same model and the same
# input tensors, in one go, then the comparison table (BENCHMARKS.md, "Component
# detector").
#
#   models/bench/run.sh [MODEL.onnx]
#
# MODEL defaults to models/chitti-components-v1/model.int8.onnx when present, else the
# dynamic-input layout fixture. CHITTI_BENCH_THREADS (default 2) sets ONNX Runtime's
# threads for both. Python onnxruntime comes from a venv in target/bench-venv (created
# on first use) unless CHITTI_BENCH_PYTHON names a python that has it.
set -euo pipefail
cd "$(dirname "$0")/../.."

model=${1:-${CHITTI_BENCH_MODEL:-}}
if [[ -z $model ]]; then
  model=models/chitti-components-v1/model.int8.onnx
  [[ -f $model ]] || model=agent/tests/fixtures/onnx/yolov8_3ch_dynamic.onnx
fi
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
export CHITTI_BENCH_MODEL=$model
export CHITTI_BENCH_THREADS=${CHITTI_BENCH_THREADS:-2}
ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(models/fetch-onnxruntime.sh)}
export ORT_DYLIB_PATH

python=${CHITTI_BENCH_PYTHON:-}
if [[ -z $python ]]; then
  python=target/bench-venv/bin/python
  if ! "$python" -c "import onnxruntime, numpy" 2>/dev/null; then
    python3 -m venv target/bench-venv
    target/bench-venv/bin/pip install --quiet --disable-pip-version-check onnxruntime==1.32.0 numpy
  fi
fi

rm -rf target/bench-detector
cargo bench -p chitti-agent --bench detector
"$python" models/bench/bench_python_ort.py --model "$model" --inputs target/bench-detector \
  --criterion "${CARGO_TARGET_DIR:-target}/criterion"
echo
echo "rerun: CHITTI_BENCH_THREADS=$CHITTI_BENCH_THREADS models/bench/run.sh $model"
