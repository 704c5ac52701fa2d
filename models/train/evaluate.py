#!/usr/bin/env python3
"""Evaluate ONNX models on a held-out synth folder with onnxruntime: mAP50 (all-point
interpolated AP per class at IoU 0.5, averaged) and per-class precision / recall at a
confidence threshold, in frame pixels (boxes mapped back through the letterbox).

    python models/train/evaluate.py --data /tmp/synth-val model.fp32.onnx model.int8.onnx --json metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chitti_det import CLASSES, SynthSet, box_iou, nms_per_class  # noqa: E402


def detect(session, data: SynthSet, conf: float):
    dets = []
    t = []
    for k in range(len(data)):
        x = data.images[k][None, None].astype(np.float32)
        t0 = time.perf_counter()
        pred = session.run(None, {"images": x})[0][0]
        t.append(time.perf_counter() - t0)
        d = nms_per_class(pred, conf)
        # Back to frame pixels.
        d[:, [0, 2]] = (d[:, [0, 2]] - data.pad_x) / data.scale
        d[:, [1, 3]] = (d[:, [1, 3]] - data.pad_y) / data.scale
        dets.append(d)
    return dets, float(np.median(t) * 1000)


def ap_voc(recall: np.ndarray, precision: np.ndarray) -> float:
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.flip(np.maximum.accumulate(np.flip(p)))
    i = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def match(dets, gts, cls, iou_thr=0.5, conf=0.0):
    """Greedy per-image matching by score; returns (scores, tp flags, n_gt)."""
    scores, tps, n_gt = [], [], 0
    for d, g in zip(dets, gts):
        d = d[(d[:, 5] == cls) & (d[:, 4] >= conf)]
        g = g[g[:, 0] == cls][:, 1:5]
        n_gt += len(g)
        used = np.zeros(len(g), bool)
        for row in d[d[:, 4].argsort()[::-1]]:
            scores.append(row[4])
            if len(g):
                iou = box_iou(row[None, :4], g)[0]
                iou[used] = -1
                j = int(iou.argmax())
                if iou[j] >= iou_thr:
                    used[j] = True
                    tps.append(1)
                    continue
            tps.append(0)
    return np.array(scores), np.array(tps), n_gt


def evaluate(dets, gts, conf: float):
    per_class = {}
    aps = []
    for c, name in enumerate(CLASSES):
        s, tp, n_gt = match(dets, gts, c)
        order = s.argsort()[::-1]
        tp_sorted = tp[order]
        ctp = np.cumsum(tp_sorted)
        cfp = np.cumsum(1 - tp_sorted)
        recall = ctp / max(n_gt, 1)
        precision = ctp / np.maximum(ctp + cfp, 1e-9)
        ap = ap_voc(recall, precision) if n_gt else float("nan")
        _, tp_c, _ = match(dets, gts, c, conf=conf)
        n_tp = int(tp_c.sum())
        n_det = len(tp_c)
        per_class[name] = {
            "ap50": round(ap, 4),
            "precision": round(n_tp / n_det, 4) if n_det else 0.0,
            "recall": round(n_tp / n_gt, 4) if n_gt else 0.0,
            "gt": n_gt,
            "detections": n_det,
        }
        if n_gt:
            aps.append(ap)
    return {"map50": round(float(np.mean(aps)), 4), "conf": conf, "per_class": per_class}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--conf", type=float, default=0.25, help="threshold for precision/recall")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N frames only")
    args = ap.parse_args()

    data = SynthSet(args.data, args.limit)
    gts = data.frame_labels
    report = {"data": args.data, "frames": len(data), "objects": int(sum(len(g) for g in gts)), "models": {}}
    for path in args.models:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        dets, ms = detect(session, data, 0.001)
        r = evaluate(dets, gts, args.conf)
        r["median_ms"] = round(ms, 2)
        report["models"][Path(path).name] = r
        print(f"{Path(path).name}: mAP50 {r['map50']:.4f}  (median {ms:.1f} ms / frame)")
        for name, c in r["per_class"].items():
            print(f"  {name:13s} AP50 {c['ap50']:.3f}  P {c['precision']:.3f}  R {c['recall']:.3f}  (gt {c['gt']})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
