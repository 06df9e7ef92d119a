#!/usr/bin/env python3
"""Rewrite a float16-weight TFLite model as the float32 model a quantizer can calibrate.

    float_model.py FP16_MODEL OUT_FP32_MODEL

With the TFLite flatbuffer schema of ai-edge-litert (object API):
  - each DEQUANTIZE operator whose input is a float16 constant is removed and its output tensor
    given a float32 buffer holding the same values, so the weights are plain float32 constants;
  - tensors no longer used are dropped and the rest renumbered (buffers stay; unused ones keep
    their place, emptied);
  - every operator code gets builtin_code = max(builtin_code, deprecated_builtin_code), TFLite's
    own rule: files written before schema 3a (MediaPipe's BlazeFace) carry only the deprecated
    field, and ai-edge-quantizer reads only the new one (it would take every operator for ADD);
  - a `serving_default` signature naming the subgraph's inputs and outputs is added if there is
    none (ai-edge-quantizer needs one to calibrate).
The network and its arithmetic are otherwise unchanged. Deterministic: same input, same bytes.
"""
import sys

import numpy as np
from ai_edge_litert import schema_py_generated as s
from ai_edge_litert.tools import flatbuffer_utils as fu

src, dst = sys.argv[1], sys.argv[2]
m = fu.read_model(src)
for c in m.operatorCodes:
    c.builtinCode = max(c.builtinCode, c.deprecatedBuiltinCode)
assert len(m.subgraphs) == 1, "one subgraph expected"
sg = m.subgraphs[0]

kept = []
for op in sg.operators:
    code = m.operatorCodes[op.opcodeIndex].builtinCode
    if code == s.BuiltinOperator.DEQUANTIZE:
        i, o = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
        data = m.buffers[i.buffer].data
        if i.type == s.TensorType.FLOAT16 and data is not None and len(data):
            h = np.frombuffer(bytes(data), np.float16).astype(np.float32)
            b = s.BufferT()
            b.data = np.frombuffer(h.tobytes(), np.uint8)
            m.buffers[i.buffer].data = None
            m.buffers.append(b)
            o.buffer = len(m.buffers) - 1
            continue
    kept.append(op)
sg.operators = kept

used = set(sg.inputs) | set(sg.outputs)
for op in sg.operators:
    used |= {t for t in op.inputs if t >= 0} | {t for t in op.outputs if t >= 0}
    used |= {t for t in (op.intermediates if op.intermediates is not None else []) if t >= 0}
order = sorted(used)
new = {old: k for k, old in enumerate(order)}
for t, tensor in enumerate(sg.tensors):
    if t not in new and tensor.buffer and m.buffers[tensor.buffer].data is not None:
        m.buffers[tensor.buffer].data = None
sg.tensors = [sg.tensors[t] for t in order]
sg.inputs = [new[t] for t in sg.inputs]
sg.outputs = [new[t] for t in sg.outputs]
for op in sg.operators:
    op.inputs = [new[t] if t >= 0 else t for t in op.inputs]
    op.outputs = [new[t] if t >= 0 else t for t in op.outputs]
    if op.intermediates is not None:
        op.intermediates = [new[t] if t >= 0 else t for t in op.intermediates]


def tensor_map(i):
    t = s.TensorMapT()
    name = sg.tensors[i].name
    t.name = name.decode() if isinstance(name, bytes) else name
    t.tensorIndex = i
    return t


if not m.signatureDefs:
    sd = s.SignatureDefT()
    sd.signatureKey = "serving_default"
    sd.subgraphIndex = 0
    sd.inputs = [tensor_map(i) for i in sg.inputs]
    sd.outputs = [tensor_map(i) for i in sg.outputs]
    m.signatureDefs = [sd]
fu.write_model(m, dst)
print("wrote", dst)
