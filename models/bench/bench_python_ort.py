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

When the Rust bench also wrote its °C frame (frame.f32 + frame.json), the same
pre-processing is done here in numpy (1st/99.5th nearest-rank percentiles of the finite
values, unit mapping, centred letterbox with bilinear sampling at pixel centres, pad
114/255): its tensor is compared with the Rust one (an independent check of
chitti_common::detector_input), and Python end to end (numpy pre-processing +
`session.run`, no decode) is timed too.
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


def unit_range(celsius):
    """lo, hi of chitti_common::detector_input::unit_range."""
    finite = celsius[np.isfinite(celsius)]
    if finite.size == 0:
        return np.float32(0.0), np.float32(1.0)
    n = finite.size
    ranks = [int(round(p / 100.0 * (n - 1))) for p in (1.0, 99.5)]
    part = np.partition(finite, ranks)
    lo, hi = part[ranks[0]], part[ranks[1]]
    return lo, max(hi, np.float32(lo + np.float32(1.0)))


def letterbox_input(celsius, input_w, input_h, channels):
    """The model input chitti_common::detector_input::model_input gives for `celsius`."""
    sh, sw = celsius.shape
    lo, hi = unit_range(celsius)
    span = np.float32(hi - lo)
    with np.errstate(invalid="ignore"):
        unit = np.clip((celsius - lo) / span, 0.0, 1.0).astype(np.float32)
    unit[~np.isfinite(celsius)] = 0.0
    scale = min(np.float32(input_w) / np.float32(sw), np.float32(input_h) / np.float32(sh))
    inner_w = int(min(max(round(sw * scale), 1), input_w))
    inner_h = int(min(max(round(sh * scale), 1), input_h))
    pad_x, pad_y = (input_w - inner_w) // 2, (input_h - inner_h) // 2

    def taps(n_out, n_src):
        f = np.float32(n_src) / np.float32(n_out)
        s = np.clip((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * f - np.float32(0.5), 0, n_src - 1)
        i0 = np.floor(s).astype(np.int64)
        return i0, np.minimum(i0 + 1, n_src - 1), (s - i0).astype(np.float32)

    x0, x1, wx = taps(inner_w, sw)
    y0, y1, wy = taps(inner_h, sh)
    top = unit[y0][:, x0] * (1 - wx) + unit[y0][:, x1] * wx
    bottom = unit[y1][:, x0] * (1 - wx) + unit[y1][:, x1] * wx
    inner = top * (1 - wy)[:, None] + bottom * wy[:, None]
    plane = np.full((input_h, input_w), np.float32(114.0 / 255.0), dtype=np.float32)
    plane[pad_y:pad_y + inner_h, pad_x:pad_x + inner_w] = inner
    return np.broadcast_to(plane, (channels, input_h, input_w))[None].astype(np.float32)


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
        e2e = None
        frame_path = os.path.join(args.inputs, "frame.f32")
        if os.path.exists(frame_path):
            with open(os.path.join(args.inputs, "frame.json")) as f:
                fmeta = json.load(f)
            celsius = np.fromfile(frame_path, dtype="<f4").reshape(fmeta["height"], fmeta["width"])
            mine = letterbox_input(celsius, shape[3], shape[2], shape[1])
            diff = float(np.max(np.abs(mine - tensor)))
            print(f"    numpy pre-processing of the same °C frame vs the Rust tensor: max |difference| {diff:.2e}")
            e2e_times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                s.run(None, {name: letterbox_input(celsius, shape[3], shape[2], shape[1])})
                e2e_times.append((time.perf_counter() - t0) * 1000)
            e2e = statistics.median(e2e_times)
            print(f"    Python end to end (numpy pre-processing + run): median {e2e:.3f} ms")
        rows.append((size, threads, median, e2e))

    if args.criterion:
        print()
        print("| input | threads | Rust preprocess | Rust inference | Rust decode+NMS | Rust end-to-end | Python inference | Python end-to-end (numpy pre-processing, no decode) | Rust e2e / Python inference | Rust inference+decode / Python inference |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for size, threads, py, py_e2e in rows:
            pre, inf, dec, e2e = (rust_ms(args.criterion, size, s) for s in ("preprocess", "inference", "decode_nms", "end_to_end"))
            fmt = lambda v: "–" if v is None else f"{v:.3f} ms"
            ratio = "–" if e2e is None else f"{e2e / py:.2f}×"
            core = "–" if inf is None or dec is None else f"{(inf + dec) / py:.2f}×"
            print(f"| {size} | {threads} | {fmt(pre)} | {fmt(inf)} | {fmt(dec)} | {fmt(e2e)} | {py:.3f} ms | {fmt(py_e2e)} | {ratio} | {core} |")


if __name__ == "__main__":
    main()
