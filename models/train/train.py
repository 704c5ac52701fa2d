#!/usr/bin/env python3
"""Train the Chitti component detector on a ``chitti-agent synth`` folder (or a
utility's own frames converted to the same layout). CPU is enough.

    python models/train/train.py --data /tmp/synth-train --epochs 40 --out /tmp/run
    # fine-tune from the shipped weights:
    python models/train/train.py --data their-set --init models/chitti-components-v1/model.pt ...
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chitti_det import CLASSES, ChittiDet, SynthSet, detection_loss  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="synth folder (inputs/, labels/, manifest.json)")
    ap.add_argument("--out", required=True, help="folder for model.pt and train_log.json")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared CPU: more threads spin against other work)")
    ap.add_argument("--crop", default="192x160",
                    help="train on random WxH windows of the letterboxed input (same scale; 'none' = whole input)")
    ap.add_argument("--full-epochs", type=int, default=2, help="last epochs on the whole input")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N frames")
    ap.add_argument("--init", default=None, help="start from these weights (model.pt)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop after the epoch that passes this wall time (the schedule is planned for --epochs)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = SynthSet(args.data, args.limit)
    print(f"{len(data)} frames loaded in {time.time() - t0:.1f} s", flush=True)

    model = ChittiDet(len(CLASSES))
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu")["model"])
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(data) / args.batch)
    total = steps_per_epoch * args.epochs
    warmup = min(steps_per_epoch * 2, total // 10 + 1)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        f = (step - warmup) / max(1, total - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * f)))

    log = {"args": vars(args), "parameters": params, "frames": len(data), "epochs": []}
    step = 0
    started = time.time()
    crop = None if args.crop == "none" else tuple(int(v) for v in args.crop.split("x"))
    for epoch in range(args.epochs):
        model.train()
        window = crop if epoch < args.epochs - args.full_epochs else None
        order = rng.permutation(len(data))
        e0 = time.time()
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            images, labels = data.batch(idx, rng, window)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss, cls_l, box_l = detection_loss(model(images), labels, len(CLASSES))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            sums += [float(loss), float(cls_l), float(box_l)]
            step += 1
        sums /= steps_per_epoch
        e_s = time.time() - e0
        rec = {"epoch": epoch + 1, "loss": round(sums[0], 4), "cls": round(sums[1], 4),
               "box": round(sums[2], 4), "seconds": round(e_s, 1), "lr": round(lr_at(step - 1), 6),
               "input": "x".join(map(str, window)) if window else "full"}
        log["epochs"].append(rec)
        print(json.dumps(rec), flush=True)
        torch.save({"model": model.state_dict(), "classes": CLASSES, "epoch": epoch + 1}, out / "model.pt")
        if args.max_minutes and (time.time() - started) / 60 > args.max_minutes:
            print(f"stopping after epoch {epoch + 1}: time budget reached", flush=True)
            break
    log["train_seconds"] = round(time.time() - started, 1)
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    print(f"trained in {log['train_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
