#!/usr/bin/env python3
"""Python onnxruntime on the same model and the same input tensors as the Rust
detector benchmark (agent/benches/detector.rs writes them to target/bench-detector/),
with the same session options (intra-op threads, no spinning, full optimisation).

    python3 models/bench/bench_python_ort.py --model MODEL.onnx \
        [--inputs target/bench-detector] [--threads 2] [--runs 200] \
        [--criterion target/criterion]

Prints, per input size, the median and p10/p90 of `session.run` (inference alone),
and with --criterion the Rust figures from criterion's estimates next to it: the Rust
end-to-end time (pre-processing + inference + decode + NMS) over Python's inference.
"""

import argparse
import glob
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(model, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def rust_ms(criterion_dir, size, stage):
    path = os.path.join(criterion_dir, f"detector_{size}", stage, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] / 1e6
    except (OSError, KeyError, ValueError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", default="target/bench-detector")
    p.add_argument("--threads", type=int, default=None, help="default: what the Rust run used")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--criterion", default=None, help="criterion output folder to compare with")
    args = p.parse_args()

    metas = sorted(glob.glob(os.path.join(args.inputs, "input_*.json")))
    if not metas:
        raise SystemExit(f"no input tensors in {args.inputs}: run `cargo bench -p chitti-agent --bench detector` first")
    print(f"onnxruntime {ort.__version__} (Python), model {args.model}")
    rows = []
    for meta_path in metas:
        with open(meta_path) as f:
            meta = json.load(f)
        threads = args.threads or int(meta.get("threads", 1))
        shape = meta["shape"]
        size = f"{shape[3]}x{shape[2]}"
        tensor = np.fromfile(meta_path[:-5] + ".f32", dtype="<f4").reshape(shape)
        s = session(args.model, threads)
        name = s.get_inputs()[0].name
        for _ in range(10):
            s.run(None, {name: tensor})
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            s.run(None, {name: tensor})
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        median = statistics.median(times)
        p10, p90 = times[len(times) // 10], times[(len(times) * 9) // 10]
        print(f"  {size} ({threads} thread(s)): inference median {median:.3f} ms (p10 {p10:.3f}, p90 {p90:.3f}) over {args.runs} runs")
        rows.append((size, threads, median))

    if args.criterion:
        print()
        print("| input | threads | Rust preprocess | Rust inference | Rust decode+NMS | Rust end-to-end | Python inference | Rust e2e / Python |")
        print("|---|---|---|---|---|---|---|---|")
        for size, threads, py in rows:
            pre, inf, dec, e2e = (rust_ms(args.criterion, size, s) for s in ("preprocess", "inference", "decode_nms", "end_to_end"))
            fmt = lambda v: "–" if v is None else f"{v:.3f} ms"
            ratio = "–" if e2e is None else f"{e2e / py:.2f}×"
            print(f"| {size} | {threads} | {fmt(pre)} | {fmt(inf)} | {fmt(dec)} | {fmt(e2e)} | {py:.3f} ms | {ratio} |")


if __name__ == "__main__":
    main()
