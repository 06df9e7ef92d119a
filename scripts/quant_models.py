#!/usr/bin/env python3
"""Derive the dynamic-range, weight-only and 16x8 variants of the bundled SSD with ai-edge-quantizer.

    quant_models.py FP32_MODEL IMAGES_DIR OUT_DIR [NAME=FP32_MODEL:SIZE:INPUT ...]

Writes into OUT_DIR (recipes of ai-edge-quantizer 0.10.0):
  ssd_mobilenetv2_oidv4_dynamic.tflite        dynamic_wi8_afp32         (int8 weights, float activations
                                                                         quantized on the fly)
  ssd_mobilenetv2_oidv4_dynamic_legacy.tflite dynamic_legacy_wi8_afp32  (the converter's legacy hybrid form)
  ssd_mobilenetv2_oidv4_weight_only.tflite    weight_only_wi8_afp32     (int8 weights, DEQUANTIZE to float)
  ssd_mobilenetv2_oidv4_int16.tflite          static_wi8_ai16           (16x8: int16 activations, int8 weights),
                                              calibrated on every *.jpg of IMAGES_DIR scaled to 300x300, [-1, 1]
and, for each NAME=FP32_MODEL:SIZE:INPUT (a MediaPipe detector made float32 by float_model.py):
  NAME_int16.tflite                           static_wi8_ai16, calibrated on the same stills scaled
                                              to SIZE x SIZE, [-1, 1], through the input INPUT
"""
import glob
import os
import sys

import numpy as np
from PIL import Image
from ai_edge_quantizer import quantizer, recipe

src, images, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)


def load(path, size):
    a = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
    return (a / 127.5 - 1.0)[None]


def write(name, rec, calibrate=False, src=src, size=300, input_name="normalized_input_image_tensor"):
    qt = quantizer.Quantizer(src)
    qt.load_quantization_recipe(rec)
    if calibrate:
        frames = [load(p, size) for p in sorted(glob.glob(os.path.join(images, "*.jpg")))]
        assert frames, f"no *.jpg in {images}"
        res = qt.calibrate({"serving_default": [{input_name: x} for x in frames]})
        q = qt.quantize(res)
    else:
        q = qt.quantize()
    dst = os.path.join(out, name)
    q.export_model(dst, overwrite=True)
    print("wrote", dst)


write("ssd_mobilenetv2_oidv4_dynamic.tflite", recipe.dynamic_wi8_afp32())
write("ssd_mobilenetv2_oidv4_dynamic_legacy.tflite", recipe.dynamic_legacy_wi8_afp32())
write("ssd_mobilenetv2_oidv4_weight_only.tflite", recipe.weight_only_wi8_afp32())
write("ssd_mobilenetv2_oidv4_int16.tflite", recipe.static_wi8_ai16(), calibrate=True)
for arg in sys.argv[4:]:
    name, rest = arg.split("=", 1)
    model, size, input_name = rest.rsplit(":", 2)
    write(f"{name}_int16.tflite", recipe.static_wi8_ai16(), True, model, int(size), input_name)
