#!/usr/bin/env python3
"""Export trained weights (model.pt) to ONNX: input ``images`` [1,1,H,W] (dynamic H, W;
multiples of 32), output ``output0`` [1, 4+nc, N] (cx, cy, w, h in letterboxed input
pixels, sigmoid scores), Ultralytics-compatible metadata plus ``chitti_input``.

    python models/train/export_onnx.py --weights run/model.pt --out model.fp32.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chitti_det import CLASSES, INPUT_H, INPUT_W, STRIDES, ChittiDet, fold_bn  # noqa: E402

NAME = "chitti-components"
CHITTI_INPUT = (
    "unit image: per frame, the 1st and 99.5th percentile of the °C values map to 0 and 1 "
    "(span at least 1 °C), clamped; letterboxed centred with bilinear resize, border 114/255; "
    "1 channel; chitti_common::detector_input"
)


def metadata(version: str) -> dict[str, str]:
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(CLASSES)) + "}"
    return {
        "names": names,
        "imgsz": f"[{INPUT_H}, {INPUT_W}]",
        "stride": str(max(STRIDES)),
        "channels": "1",
        "task": "detect",
        "end2end": "False",
        "batch": "1",
        "author": "Chitti project",
        "license": "MIT OR Apache-2.0",
        "description": f"{NAME} {version}: substation component detector trained on synthetic radiometric scenes",
        "version": version,
        "chitti_input": CHITTI_INPUT,
        "chitti_model": NAME,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--static", action="store_true", help="fixed 256x320 input instead of dynamic H, W")
    args = ap.parse_args()

    model = ChittiDet(len(CLASSES))
    model.load_state_dict(torch.load(args.weights, map_location="cpu")["model"])
    model.eval()
    fold_bn(model)
    model.export_decode = True
    dummy = torch.zeros(1, 1, INPUT_H, INPUT_W)
    dynamic = None if args.static else {"images": {2: "height", 3: "width"}, "output0": {2: "anchors"}}
    kwargs = dict(input_names=["images"], output_names=["output0"], opset_version=17,
                  dynamic_axes=dynamic, do_constant_folding=True)
    try:
        torch.onnx.export(model, (dummy,), args.out, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(model, (dummy,), args.out, **kwargs)
    m = onnx.load(args.out)
    for k, v in metadata(args.version).items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "chitti models/train"
    onnx.checker.check_model(m)
    onnx.save(m, args.out)
    print(f"wrote {args.out}: inputs {[i.name for i in m.graph.input]}, outputs {[o.name for o in m.graph.output]}, "
          f"{len(m.graph.node)} nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
