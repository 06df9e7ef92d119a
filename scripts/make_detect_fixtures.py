"""Generate tests/data/detect/ (see scripts/make-detect-fixtures)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover
    from tflite_runtime.interpreter import Interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ["EDGECAM_BIN"]
SHARED = os.environ["EDGECAM_SHARED"]
DESC_PATH = os.path.join(ROOT, "models", "ssd_mobilenetv2_oidv4.json")
OUT = os.path.join(ROOT, "tests", "data", "detect")
IMAGES = ["person.jpg", "dog.jpg"]
MODELS = {"fp32": "ssd_mobilenetv2_oidv4_fp32.tflite", "int8": "ssd_mobilenetv2_oidv4_int8.tflite"}

DESC = json.load(open(DESC_PATH))
LABELS = [l.rstrip() for l in open(os.path.join(ROOT, "models", DESC["labels"]))]
while LABELS and not LABELS[-1]:
    LABELS.pop()


def rust_preprocess(image, letterbox=False):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "x.npy")
        cmd = [BIN, "preprocess", "--desc", DESC_PATH, "--out", out, image]
        if letterbox:
            cmd.insert(2, "--letterbox")
        subprocess.run(cmd, check=True)
        return np.load(out)


# ---- numpy re-implementation of the documented preprocess (cross-check only)
def taps(src, dst):
    f32 = np.float32
    ratio = f32(src) / f32(dst)
    f = (np.arange(dst, dtype=f32) + f32(0.5)) * ratio - f32(0.5)
    f = np.clip(f, f32(0), f32(src - 1))
    i0 = np.floor(f).astype(np.int64)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (f - i0.astype(f32)).astype(f32)


def numpy_preprocess(rgb, w, h, mean, std, letterbox=False):
    sh, sw, _ = rgb.shape
    if letterbox:
        k = min(w / sw, h / sh)
        rw = min(max(1, int(np.floor(sw * k + 0.5))), w)
        rh = min(max(1, int(np.floor(sh * k + 0.5))), h)
        px, py = (w - rw) // 2, (h - rh) // 2
    else:
        rw, rh, px, py = w, h, 0, 0
    x0, x1, ax = taps(sw, rw)
    y0, y1, ay = taps(sh, rh)
    s = rgb.astype(np.float32)
    p00 = s[y0][:, x0]
    p01 = s[y0][:, x1]
    p10 = s[y1][:, x0]
    p11 = s[y1][:, x1]
    axb = ax[None, :, None]
    top = p00 + (p01 - p00) * axb
    bot = p10 + (p11 - p10) * axb
    v = top + (bot - top) * ay[:, None, None]
    mean = np.array(mean, np.float32)
    std = np.array(std, np.float32)
    out = np.empty((h, w, 3), np.float32)
    out[:] = (np.float32(0) - mean) / std  # pad colour black
    out[py:py + rh, px:px + rw] = (v - mean) / std
    return out[None]


def check_formula():
    rng = np.random.default_rng(7)
    inp = DESC["input"]
    for (sw, sh) in [(97, 61), (640, 424), (300, 300), (211, 503)]:
        rgb = rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.png")
            Image.fromarray(rgb).save(p)
            for lb in (False, True):
                r = rust_preprocess(p, lb)
                n = numpy_preprocess(rgb, inp["width"], inp["height"], inp["mean"], inp["std"], lb)
                diff = float(np.abs(r - n).max())
                assert diff <= 1e-6, (sw, sh, lb, diff)
    print("preprocess formula: numpy re-implementation matches edgecam (max diff <= 1e-6)")


# ---- decoding (independent of the Rust code; float32 like it)
def anchors():
    a = DESC["anchors"]
    n = a["num_layers"]
    f = lambda v: float(np.float32(v))  # the description is parsed as f32 by edgecam
    lo, hi = f(a["min_scale"]), f(a["max_scale"])
    s = [lo + (hi - lo) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for i, fm in enumerate(a["feature_maps"]):
        if i == 0 and a["reduce_boxes_in_lowest_layer"]:
            cfg = [(f(a["lowest_layer_min_scale"]), 1.0), (s[0], 2.0), (s[0], 0.5)]
        else:
            cfg = [(s[i], r) for r in a["aspect_ratios"]]
            if a["interpolated_scale_aspect_ratio"] > 0:
                cfg.append((np.sqrt(s[i] * s[i + 1]), f(a["interpolated_scale_aspect_ratio"])))
        off = f(a["anchor_offset"])
        for y in range(fm):
            for x in range(fm):
                for sc, r in cfg:
                    r = float(np.float32(r))
                    out.append(((y + off) / fm, (x + off) / fm, sc / np.sqrt(r), sc * np.sqrt(r)))
    out = np.array(out, np.float64).astype(np.float32)
    assert len(out) == a["num_anchors"]
    return out


A = anchors()


def iou(a, b):
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    if area_a <= 0 or area_b <= 0:
        return np.float32(0)
    ih = max(min(a[2], b[2]) - max(a[0], b[0]), np.float32(0))
    iw = max(min(a[3], b[3]) - max(a[1], b[1]), np.float32(0))
    inter = ih * iw
    return inter / (area_a + area_b - inter)


def decode(box, logits):
    c = DESC["box_coder"]
    a64 = A.astype(np.float64)
    b64 = box.astype(np.float32).astype(np.float64)
    yc = (b64[:, 0] / np.float64(np.float32(c["y_scale"])) * a64[:, 2] + a64[:, 0]).astype(np.float32)
    xc = (b64[:, 1] / np.float64(np.float32(c["x_scale"])) * a64[:, 3] + a64[:, 1]).astype(np.float32)
    hh = (0.5 * np.exp(b64[:, 2] / np.float64(np.float32(c["h_scale"]))) * a64[:, 2]).astype(np.float32)
    hw = (0.5 * np.exp(b64[:, 3] / np.float64(np.float32(c["w_scale"]))) * a64[:, 3]).astype(np.float32)
    boxes = np.stack([yc - hh, xc - hw, yc + hh, xc + hw], 1)
    sc = np.float32(1) / (np.float32(1) + np.exp(-logits.astype(np.float32)))
    bg = DESC["background_class"]
    sc[:, bg] = -np.inf
    cls = sc.argmax(1)
    best = sc[np.arange(len(sc)), cls]
    thr = np.float32(DESC["score_threshold"])
    cand = [i for i in range(len(best)) if best[i] >= thr]
    cand.sort(key=lambda i: (-best[i], i))
    keep = []
    iou_thr = np.float32(DESC["nms_iou_threshold"])
    for i in cand:
        if len(keep) >= DESC["max_detections"]:
            break
        if all(cls[i] != cls[j] or iou(boxes[i], boxes[j]) <= iou_thr for j in keep):
            keep.append(i)
    return [
        {
            "anchor": int(i),
            "class_id": int(cls[i]),
            "label": LABELS[cls[i]],
            "score": float(best[i]),
            "bbox": [float(v) for v in boxes[i]],
        }
        for i in keep
    ]


def main():
    check_formula()
    os.makedirs(OUT, exist_ok=True)
    meta = {"models": {}, "images": {}, "detections": {}}
    for tag, model in MODELS.items():
        it = Interpreter(model_path=os.path.join(SHARED, "models", model))
        it.allocate_tensors()
        d = it.get_input_details()[0]
        outs = it.get_output_details()
        meta["models"][tag] = {
            "file": model,
            "input_dtype": np.dtype(d["dtype"]).name,
            "input_quant": [float(d["quantization"][0]), int(d["quantization"][1])],
            "outputs": [
                {"name": o["name"], "dtype": np.dtype(o["dtype"]).name,
                 "quant": [float(o["quantization"][0]), int(o["quantization"][1])]}
                for o in outs
            ],
        }
        for img in IMAGES:
            stem = os.path.splitext(img)[0]
            x = rust_preprocess(os.path.join(SHARED, "media", "images", img))
            meta["images"][stem] = {
                "sum": float(x.astype(np.float64).sum()),
                "samples": {str(k): float(x.reshape(-1)[k]) for k in (0, 1, 2, 4507, 135000, 269999)},
            }
            if d["dtype"] != np.float32:
                s, z = d["quantization"]
                info = np.iinfo(d["dtype"])
                r = x / np.float32(s)
                q = np.sign(r) * np.floor(np.abs(r) + np.float32(0.5))
                x = np.clip(q + z, info.min, info.max).astype(d["dtype"])
            it.set_tensor(d["index"], x)
            it.invoke()
            raw = [it.get_tensor(o["index"])[0] for o in outs]
            np.save(os.path.join(OUT, f"{stem}_{tag}_boxes.npy"), raw[0])
            np.save(os.path.join(OUT, f"{stem}_{tag}_scores.npy"), raw[1])
            deq = []
            for v, o in zip(raw, outs):
                if o["dtype"] != np.float32:
                    s, z = o["quantization"]
                    v = (v.astype(np.int32) - z).astype(np.float32) * np.float32(s)
                deq.append(v.astype(np.float32))
            dets = decode(deq[0], deq[1])
            meta["detections"][f"{stem}_{tag}"] = dets
            print(stem, tag, [(x["label"], round(x["score"], 3)) for x in dets])
    with open(os.path.join(OUT, "fixtures.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
