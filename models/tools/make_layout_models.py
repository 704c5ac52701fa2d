#!/usr/bin/env python3
"""Builds the tiny ONNX models the agent's detector tests run through ONNX Runtime.

Each model takes an `images` input like a real detector and answers with a tensor in
one of the output layouts the runtime decodes, holding boxes chosen so that the tests
know exactly which detections (in frame pixels, after the inverse letterbox, the
confidence threshold and class-wise NMS) must come out. The graphs are a handful of
nodes and a few hundred bytes of constants; they carry Ultralytics-style metadata
(`names`, `imgsz`, `stride`, `task`, `channels`, `end2end`) like the models users bring.

Only the `onnx` package is needed (plus numpy):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install onnx numpy
    /tmp/venv/bin/python models/tools/make_layout_models.py agent/tests/fixtures/onnx

The geometry every test uses: a 160x120 frame letterboxed into a 320x256 input
(scale 2, no side border, 8 rows of border top and bottom), so a frame point (x, y) is
the model point (2x, 2y + 8). The expected detections are listed in
agent/tests/fixtures/onnx/README.md and asserted in agent/tests/detector_onnx.rs.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # ONNX Runtime >= 1.17 reads IR 8 / opset 13 models
OPSET = 13
INPUT_W, INPUT_H = 320, 256


def model_box(x1, y1, x2, y2):
    """A frame box (x1, y1, x2, y2) in model pixels as (cx, cy, w, h)."""
    mx1, my1, mx2, my2 = 2 * x1, 2 * y1 + 8, 2 * x2, 2 * y2 + 8
    return ((mx1 + mx2) / 2, (my1 + my2) / 2, mx2 - mx1, my2 - my1)


def model_corners(x1, y1, x2, y2):
    return (2 * x1, 2 * y1 + 8, 2 * x2, 2 * y2 + 8)


def const(name, array):
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(array, np.float32), name)
    )


def save(model_graph, metadata, path):
    model = helper.make_model(
        model_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="chitti make_layout_models.py",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


def constant_output_graph(name, channels, table, out_shape):
    """`output0 = table + 0 * mean(images)`: a fixed answer that still consumes the
    input, so ONNX Runtime checks the input's shape and type like a real model's."""
    nodes = [
        const("table", table.reshape(out_shape)),
        const("zero", np.float32(0.0)),
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output0"]),
    ]
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, INPUT_H, INPUT_W])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
    )


def ultralytics_metadata(names, channels, **extra):
    meta = {
        "name": extra.pop("name"),
        "version": "1",
        "description": "chitti test fixture (models/tools/make_layout_models.py)",
        "task": "detect",
        "stride": "32",
        "batch": "1",
        "imgsz": f"[{INPUT_H}, {INPUT_W}]",
        "names": "{" + ", ".join(f"{i}: {n!r}" for i, n in enumerate(names)) + "}",
        "channels": str(channels),
    }
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def yolov8(out_dir):
    """[1, 4+nc, N]: cx, cy, w, h in model pixels, then one (sigmoid) score per class."""
    names = ["bushing", "clamp", "insulator"]
    nc, n = len(names), 10
    anchors = [
        # frame box, class, score
        ((40, 20, 60, 40), 0, 0.90),  # A: kept
        ((42, 22, 62, 42), 0, 0.80),  # B: IoU 0.68 with A, same class: suppressed
        ((40, 20, 60, 40), 1, 0.85),  # C: on A but another class: kept
        ((100, 60, 120, 80), 2, 0.20),  # D: below the 0.25 threshold
        ((150, 100, 170, 125), 2, 0.70),  # E: past the frame's corner: clipped
        ((0, 0, 10, 10), 0, 0.60),  # F: kept
    ]
    table = np.zeros((4 + nc, n), np.float32)
    for i, (box, cls, score) in enumerate(anchors):
        table[0:4, i] = model_box(*box)
        table[4:, i] = 0.01  # the other classes: low, so the best class is clear
        table[4 + cls, i] = score
    graph = constant_output_graph("yolov8_1ch", 1, table, [1, 4 + nc, n])
    save(graph, ultralytics_metadata(names, 1, name="fixture-yolov8", end2end="False"),
         os.path.join(out_dir, "yolov8_1ch.onnx"))


def yolov5(out_dir):
    """[1, N, 5+nc]: cx, cy, w, h, objectness, class scores; score = obj x class."""
    names = ["breaker", "disconnector"]
    nc = len(names)
    rows = [
        # frame box, objectness, class scores
        ((20, 30, 50, 60), 0.90, (0.80, 0.10)),  # breaker 0.72: kept
        ((80, 30, 110, 60), 0.50, (0.10, 0.40)),  # disconnector 0.20: below threshold
        ((80, 30, 110, 60), 0.95, (0.05, 0.50)),  # disconnector 0.475: kept
        ((21, 31, 51, 61), 0.80, (0.70, 0.00)),  # breaker 0.56 on the first: suppressed
        ((0, 0, 0, 0), 0.0, (0.0, 0.0)),
    ]
    table = np.zeros((len(rows), 5 + nc), np.float32)
    for i, (box, obj, scores) in enumerate(rows):
        table[i, 0:4] = model_box(*box)
        table[i, 4] = obj
        table[i, 5:] = scores
    graph = constant_output_graph("yolov5_3ch", 3, table, [1, len(rows), 5 + nc])
    # Classic YOLOv5 exports carry only `stride` and `names`.
    meta = {
        "stride": "32",
        "names": "{0: 'breaker', 1: 'disconnector'}",
        "name": "fixture-yolov5",
        "version": "1",
    }
    save(graph, meta, os.path.join(out_dir, "yolov5_3ch.onnx"))


def end2end(out_dir):
    """[1, K, 6]: x1, y1, x2, y2 in model pixels, score, class — NMS done in the model."""
    names = ["bushing", "clamp", "insulator"]
    rows = [
        ((30, 40, 70, 80), 0.88, 2),  # insulator: kept
        ((31, 41, 71, 81), 0.50, 2),  # overlaps the first: kept (the model did NMS)
        ((5, 5, 25, 25), 0.10, 0),  # below threshold
        ((0, 0, 0, 0), 0.0, 0),
        ((0, 0, 0, 0), 0.0, 0),
    ]
    table = np.zeros((len(rows), 6), np.float32)
    for i, (box, score, cls) in enumerate(rows):
        table[i, 0:4] = model_corners(*box)
        table[i, 4] = score
        table[i, 5] = cls
    graph = constant_output_graph("end2end_1ch", 1, table, [1, len(rows), 6])
    save(graph, ultralytics_metadata(names, 1, name="fixture-end2end", end2end="True"),
         os.path.join(out_dir, "end2end_1ch.onnx"))


def yolov8_dynamic(out_dir):
    """[1, 3, H, W] with dynamic H and W; the boxes are fractions of the input size the
    model was given (so they land on the same frame pixels at any letterbox), and the
    first score is W / 1000, which tells a test which input width was fed."""
    names = ["bushing", "ct"]
    nc, n = len(names), 4
    ref_w, ref_h = float(INPUT_W), float(INPUT_H)
    fx = np.zeros((1, 1, n), np.float32)  # cx / W
    fy = np.zeros((1, 1, n), np.float32)  # cy / H
    fw = np.zeros((1, 1, n), np.float32)
    fh = np.zeros((1, 1, n), np.float32)
    scores = np.zeros((1, nc, n), np.float32)
    per_w = np.zeros((1, nc, n), np.float32)
    for i, (box, cls, score) in enumerate([((40, 20, 60, 40), 0, None), ((100, 50, 140, 90), 1, 0.9)]):
        cx, cy, w, h = model_box(*box)
        fx[0, 0, i], fy[0, 0, i], fw[0, 0, i], fh[0, 0, i] = cx / ref_w, cy / ref_h, w / ref_w, h / ref_h
        if score is None:
            per_w[0, cls, i] = 0.001
        else:
            scores[0, cls, i] = score
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Constant", [], ["i2"], value=numpy_helper.from_array(np.array(2, np.int64))),
        helper.make_node("Constant", [], ["i3"], value=numpy_helper.from_array(np.array(3, np.int64))),
        helper.make_node("Gather", ["shape", "i2"], ["h_i"], axis=0),
        helper.make_node("Gather", ["shape", "i3"], ["w_i"], axis=0),
        helper.make_node("Cast", ["h_i"], ["h"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["w_i"], ["w"], to=TensorProto.FLOAT),
        const("fx", fx), const("fy", fy), const("fw", fw), const("fh", fh),
        const("scores_fixed", scores), const("scores_per_w", per_w),
        helper.make_node("Mul", ["fx", "w"], ["cx"]),
        helper.make_node("Mul", ["fy", "h"], ["cy"]),
        helper.make_node("Mul", ["fw", "w"], ["bw"]),
        helper.make_node("Mul", ["fh", "h"], ["bh"]),
        helper.make_node("Mul", ["scores_per_w", "w"], ["scores_w"]),
        helper.make_node("Add", ["scores_fixed", "scores_w"], ["scores"]),
        helper.make_node("Concat", ["cx", "cy", "bw", "bh", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "yolov8_3ch_dynamic",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, n])],
    )
    save(graph, ultralytics_metadata(names, 3, name="fixture-yolov8-dynamic"),
         os.path.join(out_dir, "yolov8_3ch_dynamic.onnx"))


def ambiguous(out_dir):
    """[1, N, 6] with one class and no `end2end` key: classic YOLOv5 (cx, cy, w, h,
    obj, cls) or end-to-end (x1, y1, x2, y2, score, class)? The runtime must refuse."""
    table = np.zeros((4, 6), np.float32)
    graph = constant_output_graph("ambiguous", 1, table, [1, 4, 6])
    meta = {"names": "{0: 'bushing'}", "stride": "32", "imgsz": f"[{INPUT_H}, {INPUT_W}]"}
    save(graph, meta, os.path.join(out_dir, "ambiguous_1ch.onnx"))


def unknown(out_dir):
    """[1, 10, 10] with three classes: neither 4+3 nor 5+3 nor 6 wide."""
    table = np.zeros((10, 10), np.float32)
    graph = constant_output_graph("unknown", 1, table, [1, 10, 10])
    meta = {"names": "{0: 'a', 1: 'b', 2: 'c'}", "stride": "32"}
    save(graph, meta, os.path.join(out_dir, "unknown_layout_1ch.onnx"))


def shape_shifting(out_dir):
    """A yolov8-shaped output [1, 7, N] whose N is 1 + the number of input values above
    0.5: one row on the blank (grey 0.447) input the runtime checks a model with at
    load, more on a real frame. It loads, then fails every real frame: the runtime's
    "errors while running" path (degrade after three in a row)."""
    i64 = lambda name, v: helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64), name))
    nodes = [
        const("half", np.float32(0.5)),
        helper.make_node("Greater", ["images", "half"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["bright_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["bright_f"], ["count_f"], keepdims=0),
        helper.make_node("Cast", ["count_f"], ["count"], to=TensorProto.INT64),
        i64("one", 1),
        helper.make_node("Add", ["count", "one"], ["rows"]),
        i64("as_1d", [1]),
        helper.make_node("Reshape", ["rows", "as_1d"], ["rows_1d"]),
        i64("head", [1, 7]),
        helper.make_node("Concat", ["head", "rows_1d"], ["shape"], axis=0),
        helper.make_node("ConstantOfShape", ["shape"], ["output0"],
                         value=numpy_helper.from_array(np.array([0.0], np.float32))),
    ]
    graph = helper.make_graph(
        nodes,
        "shape_shifting",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 1, INPUT_H, INPUT_W])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, "rows"])],
    )
    save(graph, ultralytics_metadata(["bushing", "clamp", "insulator"], 1, name="fixture-shape-shifting"),
         os.path.join(out_dir, "shape_shifting_1ch.onnx"))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "agent/tests/fixtures/onnx"
    os.makedirs(out_dir, exist_ok=True)
    yolov8(out_dir)
    yolov5(out_dir)
    end2end(out_dir)
    yolov8_dynamic(out_dir)
    ambiguous(out_dir)
    unknown(out_dir)
    shape_shifting(out_dir)


if __name__ == "__main__":
    main()
