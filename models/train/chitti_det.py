"""Chitti component detector: the model, the data it trains on, its loss and decode.

Ours, written for this project (MIT OR Apache-2.0); no Ultralytics code or weights.

* Input: the frame's unit image (``chitti_common::detector_input::unit_image``: the
  1st..99.5th percentile °C mapped to 0..1), letterboxed centred into 320x256 with the
  border at 114/255 -- exactly what the agent's runtime feeds the model. ``chitti-agent
  synth`` stores that unit image as ``inputs/NNNNNN.png`` (16-bit, value*65535), and
  :func:`letterbox` below is a line-by-line port of ``Letterbox::fit`` / ``apply``.
* Model: a small plain CNN (ReLU, BN folded at export) with a three-level feature
  pyramid (strides 8, 16, 32) and an anchor-free head per level: per cell, class
  logits and four distances (left, top, right, bottom) to the box edges.
* Output (export): ``[1, 4 + nc, N]``, rows cx, cy, w, h in letterboxed input pixels
  then sigmoid class scores, N = cells over all levels -- the YOLOv8 layout.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

CLASSES = ["bushing", "clamp", "insulator", "disconnector", "breaker", "ct_pt"]
STRIDES = (8, 16, 32)
INPUT_H, INPUT_W = 256, 320
PAD_VALUE = 114.0 / 255.0


# ----------------------------------------------------------------------------- data
def letterbox_fit(src_w: int, src_h: int, dst_w: int, dst_h: int):
    """``Letterbox::fit``: scale, pad_x, pad_y, inner_w, inner_h."""
    scale = min(np.float32(dst_w) / np.float32(src_w), np.float32(dst_h) / np.float32(src_h))
    scale = np.float32(scale)
    inner_w = int(min(max(round(float(np.float32(src_w) * scale)), 1), dst_w))
    inner_h = int(min(max(round(float(np.float32(src_h) * scale)), 1), dst_h))
    return float(scale), (dst_w - inner_w) // 2, (dst_h - inner_h) // 2, inner_w, inner_h


def letterbox(unit: np.ndarray, dst_w: int = INPUT_W, dst_h: int = INPUT_H):
    """``Letterbox::apply`` for one plane (bilinear at pixel centres, centred, pad
    114/255). Returns (plane float32 [dst_h, dst_w], (scale, pad_x, pad_y))."""
    sh, sw = unit.shape
    scale, px, py, iw, ih = letterbox_fit(sw, sh, dst_w, dst_h)
    out = np.full((dst_h, dst_w), PAD_VALUE, dtype=np.float32)
    fx = np.float32(sw) / np.float32(iw)
    fy = np.float32(sh) / np.float32(ih)
    sy = np.clip((np.arange(ih, dtype=np.float32) + 0.5) * fy - 0.5, 0, sh - 1).astype(np.float32)
    sx = np.clip((np.arange(iw, dtype=np.float32) + 0.5) * fx - 0.5, 0, sw - 1).astype(np.float32)
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    y1 = np.minimum(y0 + 1, sh - 1)
    x1 = np.minimum(x0 + 1, sw - 1)
    wy = (sy - y0).astype(np.float32)[:, None]
    wx = (sx - x0).astype(np.float32)[None, :]
    u = unit.astype(np.float32)
    top = u[y0][:, x0] * (1 - wx) + u[y0][:, x1] * wx
    bottom = u[y1][:, x0] * (1 - wx) + u[y1][:, x1] * wx
    out[py:py + ih, px:px + iw] = top * (1 - wy) + bottom * wy
    return out, (scale, px, py)


def read_unit_png(path: Path) -> np.ndarray:
    """An ``inputs/NNNNNN.png`` (16-bit greyscale) back as the unit image 0..1."""
    with Image.open(path) as im:
        a = np.array(im, dtype=np.uint16)
    return a.astype(np.float32) / 65535.0


def read_labels(path: Path, frame_w: int, frame_h: int) -> np.ndarray:
    """YOLO labels -> [n, 5] (class, x0, y0, x1, y1) in frame pixels."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            c, cx, cy, w, h = line.split()
            cx, cy, w, h = float(cx) * frame_w, float(cy) * frame_h, float(w) * frame_w, float(h) * frame_h
            rows.append([int(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


class SynthSet:
    """A ``chitti-agent synth`` folder, letterboxed once and cached (``cache.npz``)."""

    def __init__(self, root: str | os.PathLike, limit: int | None = None):
        self.root = Path(root)
        manifest = json.loads((self.root / "manifest.json").read_text())
        self.frame_w, self.frame_h = manifest["width"], manifest["height"]
        names = sorted(p.stem for p in (self.root / "inputs").glob("*.png"))
        if limit is not None:
            names = names[:limit]
        self.names = names
        cache = self.root / f"cache_{INPUT_W}x{INPUT_H}_{len(names)}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            self.images = z["images"]
        else:
            self.images = np.stack(
                [letterbox(read_unit_png(self.root / "inputs" / f"{n}.png"))[0] for n in names]
            ).astype(np.float16)
            np.savez(cache, images=self.images)
        self.scale, self.pad_x, self.pad_y, _, _ = letterbox_fit(self.frame_w, self.frame_h, INPUT_W, INPUT_H)
        self.frame_labels = [read_labels(self.root / "labels" / f"{n}.txt", self.frame_w, self.frame_h) for n in names]
        # Labels in letterboxed input pixels.
        self.labels = []
        for lab in self.frame_labels:
            l2 = lab.copy()
            l2[:, [1, 3]] = l2[:, [1, 3]] * self.scale + self.pad_x
            l2[:, [2, 4]] = l2[:, [2, 4]] * self.scale + self.pad_y
            self.labels.append(l2)

    def __len__(self):
        return len(self.names)

    def batch(self, indices, rng: np.random.Generator | None = None, crop: tuple[int, int] | None = None):
        """A training batch: images [B,1,h,w] float32 and a list of [n,5] label tensors.
        With ``rng``: horizontal flip at random, and with ``crop`` (w, h; multiples of
        32) a random window of the letterboxed input at the same scale -- objects keep
        their deployment size, the step costs a fraction. A box cut by the window keeps
        its visible part when at least 45 % of it is inside, and is dropped otherwise."""
        imgs = self.images[indices].astype(np.float32)
        labels = [self.labels[i].copy() for i in indices]
        if rng is not None:
            for k in range(len(indices)):
                if rng.random() < 0.5:
                    imgs[k] = imgs[k][:, ::-1]
                    lab = labels[k]
                    x0 = INPUT_W - lab[:, 3]
                    x1 = INPUT_W - lab[:, 1]
                    lab[:, 1], lab[:, 3] = x0, x1
        if rng is not None and crop is not None:
            cw, ch = crop
            out = np.empty((len(indices), ch, cw), np.float32)
            for k in range(len(indices)):
                ox = int(rng.integers(0, INPUT_W - cw + 1))
                oy = int(rng.integers(0, INPUT_H - ch + 1))
                out[k] = imgs[k][oy:oy + ch, ox:ox + cw]
                lab = labels[k]
                area = (lab[:, 3] - lab[:, 1]) * (lab[:, 4] - lab[:, 2])
                c = lab.copy()
                c[:, [1, 3]] = np.clip(c[:, [1, 3]] - ox, 0, cw)
                c[:, [2, 4]] = np.clip(c[:, [2, 4]] - oy, 0, ch)
                inside = (c[:, 3] - c[:, 1]) * (c[:, 4] - c[:, 2])
                labels[k] = c[inside >= 0.45 * np.maximum(area, 1e-6)]
            imgs = out
        return torch.from_numpy(np.ascontiguousarray(imgs[:, None])), [torch.from_numpy(l) for l in labels]


# ---------------------------------------------------------------------------- model
class ConvBn(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = ConvBn(c, c)
        self.b = ConvBn(c, c)

    def forward(self, x):
        return x + self.b(self.a(x))


class ChittiDet(nn.Module):
    """Backbone /2../32, top-down pyramid at /8, /16, /32, one head per level."""

    def __init__(self, nc: int = len(CLASSES), width: int = 32):
        super().__init__()
        self.nc = nc
        self.stem = nn.Sequential(ConvBn(1, 8, 3, 2), ConvBn(8, 16, 3, 2))  # /4
        self.s8 = nn.Sequential(ConvBn(16, 32, 3, 2), ConvBn(32, 32))  # /8
        self.s16 = nn.Sequential(ConvBn(32, 64, 3, 2), ConvBn(64, 64))  # /16
        self.s32 = nn.Sequential(ConvBn(64, 128, 3, 2), Residual(128))  # /32
        self.lat8 = ConvBn(32, width, 1)
        self.lat16 = ConvBn(64, width, 1)
        self.lat32 = ConvBn(128, width, 1)
        self.fuse8 = ConvBn(width, width)
        self.fuse16 = ConvBn(width, width)
        self.tower = nn.ModuleList([ConvBn(width, width) for _ in STRIDES])
        self.cls_pred = nn.ModuleList([nn.Conv2d(width, nc, 1) for _ in STRIDES])
        self.box_pred = nn.ModuleList([nn.Conv2d(width, 4, 1) for _ in STRIDES])
        prior = -math.log((1 - 0.01) / 0.01)
        for m in self.cls_pred:
            nn.init.constant_(m.bias, prior)
        for m in self.box_pred:
            nn.init.constant_(m.bias, 1.0)
        self.export_decode = False

    def features(self, x):
        c8 = self.s8(self.stem(x))
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p32 = self.lat32(c32)
        p16 = self.fuse16(self.lat16(c16) + F.interpolate(p32, size=c16.shape[-2:], mode="nearest"))
        p8 = self.fuse8(self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest"))
        return [p8, p16, p32]

    def forward(self, x):
        """Training: per level (cls logits [B,nc,h,w], ltrb raw [B,4,h,w]).
        Export (``export_decode``): [B, 4+nc, N] decoded."""
        outs = []
        for k, p in enumerate(self.features(x)):
            t = self.tower[k](p)
            outs.append((self.cls_pred[k](t), self.box_pred[k](t)))
        if not self.export_decode:
            return outs
        return decode(outs)


def grid_points(h: int, w: int, stride: int, device=None):
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # [hw, 2]


def ltrb_distances(raw: torch.Tensor, stride: int) -> torch.Tensor:
    return F.softplus(raw) * stride


def decode(outs):
    """Per-level outputs -> [B, 4+nc, N]: cx, cy, w, h (input pixels), sigmoid scores."""
    boxes, scores = [], []
    for (cls, box), stride in zip(outs, STRIDES):
        b, _, h, w = cls.shape
        pts = grid_points(h, w, stride, cls.device)  # [hw,2]
        d = ltrb_distances(box, stride).flatten(2)  # [B,4,hw]
        px, py = pts[:, 0], pts[:, 1]
        x0 = px - d[:, 0]
        y0 = py - d[:, 1]
        x1 = px + d[:, 2]
        y1 = py + d[:, 3]
        boxes.append(torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1))
        scores.append(torch.sigmoid(cls.flatten(2)))
    return torch.cat([torch.cat(boxes, 2), torch.cat(scores, 2)], 1)


def fold_bn(model: nn.Module) -> nn.Module:
    """Folds every ConvBn's BatchNorm into its conv (for export)."""
    for m in model.modules():
        if isinstance(m, ConvBn) and isinstance(m.bn, nn.BatchNorm2d):
            conv, bn = m.conv, m.bn
            std = torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1)
            b = bn.bias - bn.running_mean * bn.weight / std
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
            fused.weight.data.copy_(w.detach())
            fused.bias.data.copy_(b.detach())
            m.conv = fused
            m.bn = nn.Identity()
    return model


# ----------------------------------------------------------------------------- loss
# A GT box goes to the levels whose size range holds its longer side (input pixels);
# the ranges overlap so a box near a boundary trains both.
LEVEL_RANGES = ((0, 72), (40, 144), (100, 10_000))
CENTRE_RADIUS = 2.5  # in strides


def assign(labels: torch.Tensor, valid: torch.Tensor, points: list[torch.Tensor]) -> torch.Tensor:
    """Centre sampling, for a whole batch: labels [B, M, 5] (padded; ``valid`` [B, M]).
    A cell is positive for a GT when its centre lies inside the box, within
    CENTRE_RADIUS strides of the box centre, on a level whose size range holds the
    box's longer side; the cell nearest each GT's centre on its levels is always
    positive (tiny boxes); a cell claimed by several GTs takes the smallest.
    Returns the GT index per cell [B, N] over all levels (-1 = background)."""
    b, m = labels.shape[:2]
    out = []
    x0, y0, x1, y1 = (labels[..., k][:, None, :] for k in range(1, 5))  # [B,1,M]
    size = torch.maximum(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    area = (x1 - x0) * (y1 - y0)
    for (lo, hi), pts, stride in zip(LEVEL_RANGES, points, STRIDES):
        px = pts[:, 0][None, :, None]  # [1,N,1]
        py = pts[:, 1][None, :, None]
        ok = (size >= lo) & (size < hi) & valid[:, None, :]  # [B,1,M]
        inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
        r = CENTRE_RADIUS * stride
        near = ((px - cx).abs() < r) & ((py - cy).abs() < r)
        pos = inside & near & ok  # [B,N,M]
        d2 = (px - cx) ** 2 + (py - cy) ** 2
        nearest = d2.argmin(1)  # [B,M]
        force = torch.zeros_like(pos)
        force.scatter_(1, nearest[:, None, :], True)
        pos = pos | (force & ok)
        a = torch.where(pos, area.expand_as(pos), torch.full_like(pos, float("inf"), dtype=area.dtype))
        best_area, best = a.min(2)  # [B,N]
        out.append(torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1)))
    return torch.cat(out, 1)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of boxes [n,4] x0y0x1y1 pairwise by row."""
    ix0 = torch.maximum(a[:, 0], b[:, 0])
    iy0 = torch.maximum(a[:, 1], b[:, 1])
    ix1 = torch.minimum(a[:, 2], b[:, 2])
    iy1 = torch.minimum(a[:, 3], b[:, 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    cx0 = torch.minimum(a[:, 0], b[:, 0])
    cy0 = torch.minimum(a[:, 1], b[:, 1])
    cx1 = torch.maximum(a[:, 2], b[:, 2])
    cy1 = torch.maximum(a[:, 3], b[:, 3])
    hull = (cx1 - cx0) * (cy1 - cy0) + 1e-7
    return iou - (hull - union) / hull, iou


def detection_loss(outs, labels: list[torch.Tensor], nc: int):
    """BCE class loss over every cell (sum / positives, IoU-aware targets) + GIoU box
    loss on positives."""
    shapes = [(c.shape[2], c.shape[3]) for c, _ in outs]
    points = [grid_points(h, w, s) for (h, w), s in zip(shapes, STRIDES)]
    cls_all = torch.cat([c.flatten(2) for c, _ in outs], 2).transpose(1, 2)  # [B,N,nc]
    box_all = torch.cat([ltrb_distances(b, s).flatten(2) for (_, b), s in zip(outs, STRIDES)], 2).transpose(1, 2)
    pts_all = torch.cat(points, 0)  # [N,2]
    bsz = len(labels)
    m = max(1, max(len(l) for l in labels))
    padded = torch.zeros(bsz, m, 5)
    valid = torch.zeros(bsz, m, dtype=torch.bool)
    for k, l in enumerate(labels):
        padded[k, :len(l)] = l
        valid[k, :len(l)] = True
    idx = assign(padded, valid, points)  # [B,N]
    pos = idx >= 0
    targets = torch.zeros_like(cls_all)
    n_pos = int(pos.sum())
    box_loss = cls_all.new_zeros(())
    if n_pos:
        bi, ni = pos.nonzero(as_tuple=True)
        gt = padded[bi, idx[bi, ni]]  # [P,5]
        d = box_all[bi, ni]
        p = pts_all[ni]
        pred = torch.stack([p[:, 0] - d[:, 0], p[:, 1] - d[:, 1], p[:, 0] + d[:, 2], p[:, 1] + d[:, 3]], 1)
        g, iou = giou(pred, gt[:, 1:5])
        box_loss = (1 - g).sum()
        targets[bi, ni, gt[:, 0].long()] = iou.detach().clamp(min=0.25)
    n = max(n_pos, 1)
    cls_loss = F.binary_cross_entropy_with_logits(cls_all, targets, reduction="sum") / n
    return cls_loss + 2.0 * box_loss / n, cls_loss.detach(), (box_loss / n).detach()


# --------------------------------------------------------------------- postprocess
def nms_per_class(pred: np.ndarray, conf: float, iou_thr: float = 0.5, max_det: int = 100):
    """[4+nc, N] model output -> detections [k, 6] (x0, y0, x1, y1, score, class) in
    input pixels: best class per cell, score >= conf, class-wise greedy NMS."""
    boxes = pred[:4].T
    scores = pred[4:].T
    cls = scores.argmax(1)
    sc = scores[np.arange(len(cls)), cls]
    keep = sc >= conf
    boxes, cls, sc = boxes[keep], cls[keep], sc[keep]
    xyxy = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2,
                     boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2], 1)
    out = []
    for c in np.unique(cls):
        m = cls == c
        b, s = xyxy[m], sc[m]
        order = s.argsort()[::-1]
        while order.size:
            i = order[0]
            out.append([*b[i], s[i], c])
            if order.size == 1:
                break
            rest = order[1:]
            iou = box_iou(b[i][None], b[rest])[0]
            order = rest[iou < iou_thr]
    out = np.array(out, dtype=np.float32).reshape(-1, 6)
    return out[out[:, 4].argsort()[::-1][:max_det]]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + ab[None, :] - inter + 1e-9)
