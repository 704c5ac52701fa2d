#!/usr/bin/env python3
"""INT8 static QDQ quantization of the exported model with onnxruntime's tools.

Everything after the head's last convolutions (the box decode: softplus, grid, concat
of pixel boxes with sigmoid scores) stays float: quantizing the final concat gives
boxes (0..320 px) and scores (0..1) one int8 scale and destroys every score. The six
1x1 prediction convs stay float too (they cost nothing), and so does the **first
convolution**: quantizing the unit-image input to 8 bits and the 1-channel stem took
the shipped model's mAP50 from 0.962 to 0.859 (an intermediate checkpoint: 0.90 to
0.78; bushings, told from insulators by a degree or two of shed contrast, lost half
their recall); keeping that one conv (1.5 M MACs) float gives back fp32's mAP50.

    python models/train/quantize.py --fp32 model.fp32.onnx --calib /tmp/synth-train --out model.int8.onnx
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chitti_det import SynthSet  # noqa: E402


def decode_tail(model: onnx.ModelProto, include_preds: bool) -> list[str]:
    """Names of every node downstream of the prediction convs (cls_pred / box_pred),
    and the prediction convs themselves with ``include_preds``."""
    preds = [n for n in model.graph.node if n.op_type == "Conv"
             and any("cls_pred" in i or "box_pred" in i for i in n.input[1:])]
    if len(preds) != 6:
        raise SystemExit(f"expected 6 prediction convs, found {len(preds)}")
    frontier = {o for n in preds for o in n.output}
    tail: list[str] = []
    seen = set()
    changed = True
    while changed:
        changed = False
        for n in model.graph.node:
            if n.name in seen or n in preds:
                continue
            if any(i in frontier for i in n.input):
                seen.add(n.name)
                tail.append(n.name)
                frontier.update(n.output)
                changed = True
    # Shape-only chains that start from the input (grid sizes) feed the tail too;
    # they carry no activations, so leaving them quantizable changes nothing.
    if include_preds:
        tail += [n.name for n in preds]
    return tail


class Calibration(CalibrationDataReader):
    def __init__(self, images: np.ndarray):
        self.it = iter([{"images": im[None, None].astype(np.float32)} for im in images])

    def get_next(self):
        return next(self.it, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32", required=True)
    ap.add_argument("--calib", required=True, help="synth folder for calibration inputs")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quantize-preds", action="store_true",
                    help="quantize the six 1x1 prediction convs too (default: keep them float; they cost nothing)")
    ap.add_argument("--quantize-first-conv", action="store_true",
                    help="quantize the input and the first conv too (default: keep them float)")
    ap.add_argument("--keep-float", default="",
                    help="comma-separated node-name prefixes to keep float as well (e.g. /stem)")
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    args = ap.parse_args()

    images = SynthSet(args.calib, args.count).images
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[args.method]
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        cwd = os.getcwd()
        os.chdir(tmp)  # quant_pre_process leaves temporary files in the working folder
        try:
            try:
                quant_pre_process(os.path.join(cwd, args.fp32), pre)
            except Exception as e:  # dynamic shapes: symbolic inference gives up
                print(f"pre-process with symbolic shapes failed ({e}); skipping them")
                quant_pre_process(os.path.join(cwd, args.fp32), pre, skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
        model = onnx.load(pre)
        tail = decode_tail(model, not args.quantize_preds)
        prefixes = [p for p in args.keep_float.split(",") if p]
        extra = [n.name for n in model.graph.node if any(n.name.startswith(p) for p in prefixes)]
        if not args.quantize_first_conv:
            inputs = {i.name for i in model.graph.input}
            extra += [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs]
        tail += [n for n in extra if n not in tail]
        print(f"excluding {len(tail)} nodes from quantization ({len(extra)} by --keep-float)")
        quantize_static(pre, args.out, Calibration(images), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=tail, calibrate_method=method,
                        extra_options={"CalibPercentile": 99.99} if args.method == "percentile" else {})
    # Carry the metadata over (the quantizer keeps it, but be sure).
    src = onnx.load(args.fp32)
    q = onnx.load(args.out)
    have = {p.key for p in q.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            n = q.metadata_props.add()
            n.key, n.value = p.key, p.value
    for p in q.metadata_props:
        if p.key == "description":
            p.value = p.value + " (int8 static QDQ, decode tail float)"
    onnx.save(q, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
