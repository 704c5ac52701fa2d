#!/usr/bin/env python3
"""Write a shipped model's manifest.json: files with sha256 and size, classes, input,
normalisation, metrics (from evaluate.py --json) and the training recipe.

    python models/train/write_manifest.py --dir models/chitti-components-v1 \
        --metrics /tmp/metrics.json --train-log /tmp/run/train_log.json --recipe recipe.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chitti_det import CLASSES, INPUT_H, INPUT_W, STRIDES  # noqa: E402
from export_onnx import CHITTI_INPUT, NAME  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--train-log", required=True)
    ap.add_argument("--recipe", default=None, help="JSON with the data/training commands and seeds")
    ap.add_argument("--version", default="1.0.0")
    args = ap.parse_args()

    d = Path(args.dir)
    files = {}
    for variant, name in (("fp32", "model.fp32.onnx"), ("int8", "model.int8.onnx"), ("weights", "model.pt")):
        p = d / name
        if not p.exists():
            continue
        b = p.read_bytes()
        files[variant] = {"path": name, "sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
    metrics = json.loads(Path(args.metrics).read_text())
    log = json.loads(Path(args.train_log).read_text())
    recipe = json.loads(Path(args.recipe).read_text()) if args.recipe else {}
    by_file = {}
    for fname, r in metrics["models"].items():
        key = "int8" if "int8" in fname else "fp32"
        by_file[key] = {"map50": r["map50"], "conf": r["conf"], "per_class": r["per_class"],
                        "median_ms_python_ort": r.get("median_ms")}
    manifest = {
        "name": NAME,
        "version": args.version,
        "task": "detect",
        "classes": CLASSES,
        "input": {
            "name": "images",
            "shape": [1, 1, INPUT_H, INPUT_W],
            "dynamic_hw": True,
            "layout": "NCHW float32",
            "normalisation": CHITTI_INPUT,
            "pad_value": "114/255",
        },
        "output": {
            "name": "output0",
            "layout": "[1, 4+nc, N]: cx, cy, w, h in letterboxed input pixels, then sigmoid class scores",
            "strides": list(STRIDES),
            "anchors_at_256x320": sum((INPUT_H // s) * (INPUT_W // s) for s in STRIDES),
        },
        "files": {k: v for k, v in files.items() if k in ("fp32", "int8")},
        "weights": files.get("weights"),
        "metrics": {
            "data": metrics["data"],
            "frames": metrics["frames"],
            "objects": metrics["objects"],
            "iou": 0.5,
            **by_file,
        },
        "training": {
            **recipe,
            "seed": log["args"]["seed"],
            "epochs": len(log["epochs"]),
            "batch": log["args"]["batch"],
            "lr": log["args"]["lr"],
            "crop": log["args"]["crop"],
            "frames": log["frames"],
            "parameters": log["parameters"],
            "train_seconds": log["train_seconds"],
            "final_loss": log["epochs"][-1]["loss"],
        },
        "licence": "MIT OR Apache-2.0",
        "trained_with": "models/train (this repository); no third-party weights",
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {d / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
