#!/usr/bin/env python3
"""Reference YOLO decoder for tests/yolo.rs: an independent numpy implementation.

Usage: yolo_reference.py MODEL.tflite INPUT.npy LAYOUT SCORE IOU MAX_DET OUT.json

Runs MODEL in TFLite's reference kernels (ai-edge-litert, BUILTIN_REF) on INPUT, takes its one
output and decodes it the way exported YOLO detectors are read (Ultralytics' single-label
non-maximum suppression):
  v5 [1, N, 5 + C]: box (cx, cy, w, h), objectness, class scores; score = objectness x best class
  v8 [1, 4 + C, N]: box (cx, cy, w, h), class scores; score = best class
Coordinates above 2 in a frame mean pixels (divided by the input width / height). Boxes with
score >= SCORE are sorted by score (ties: lower box index) and suppressed greedily within their
class when IoU > IOU, at most MAX_DET kept. Writes [{"class", "score", "box"}] with box =
[ymin, xmin, ymax, xmax] normalised.
"""
import json
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def iou(a, b):
    area_a = np.float32((a[2] - a[0]) * (a[3] - a[1]))
    area_b = np.float32((b[2] - b[0]) * (b[3] - b[1]))
    if area_a <= 0 or area_b <= 0:
        return np.float32(0)
    ih = max(np.float32(min(a[2], b[2]) - max(a[0], b[0])), np.float32(0))
    iw = max(np.float32(min(a[3], b[3]) - max(a[1], b[1])), np.float32(0))
    inter = np.float32(ih * iw)
    return np.float32(inter / np.float32(area_a + area_b - inter))


def main():
    model, inp, layout, score_t, iou_t, max_det, out = sys.argv[1:8]
    score_t, iou_t, max_det = np.float32(score_t), np.float32(iou_t), int(max_det)
    it = Interpreter(model_path=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    x = np.load(inp)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    (det,) = it.get_output_details()
    y = it.get_tensor(det["index"]).astype(np.float32)[0]
    h_in, w_in = x.shape[1], x.shape[2]
    rows = y if layout == "v5" else y.T
    first = 5 if layout == "v5" else 4
    xywh = rows[:, :4].copy()
    if (xywh > 2.0).any():
        xywh[:, [0, 2]] *= np.float32(1.0 / w_in)
        xywh[:, [1, 3]] *= np.float32(1.0 / h_in)
    cls = rows[:, first:]
    best = cls.argmax(axis=1)  # ties: the lower class
    score = cls.max(axis=1)
    if layout == "v5":
        score = (rows[:, 4] * score).astype(np.float32)
    cx, cy, w, h = xywh.T
    half = np.float32(2.0)
    boxes = np.stack([cy - h / half, cx - w / half, cy + h / half, cx + w / half], axis=1)
    idx = [i for i in range(len(rows)) if score[i] >= score_t]
    idx.sort(key=lambda i: (-score[i], i))
    keep, gone = [], set()
    for a, i in enumerate(idx):
        if len(keep) >= max_det:
            break
        if i in gone:
            continue
        keep.append(i)
        for j in idx[a + 1:]:
            if j not in gone and best[j] == best[i] and iou(boxes[i], boxes[j]) > iou_t:
                gone.add(j)
    res = [{"class": int(best[i]), "score": float(score[i]), "box": [float(v) for v in boxes[i]]}
           for i in keep]
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
