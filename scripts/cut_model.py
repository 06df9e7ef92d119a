#!/usr/bin/env python3
"""Cut a .tflite model before the first operator of a kind.

Usage: cut_model.py IN OUT OP_NAME

Keeps the operators of subgraph 0 that come before the first OP_NAME operator (a model's
operators are in execution order, so these compute everything they need) and makes the
cut the model's outputs: every tensor they produce that a later operator or the model's
outputs read. Signatures are dropped (the outputs changed). Used by tests/mediapipe.rs to
compare edgecam with TFLite on the part of a model edgecam runs before an operator it
lacks. Needs ai-edge-litert (its flatbuffer schema module).
"""
import sys

import flatbuffers
from ai_edge_litert import schema_py_generated as schema


def op_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    c = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(c, str(c))


def main():
    src, dst, name = sys.argv[1:4]
    with open(src, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    first = next((i for i, op in enumerate(ops) if op_name(model, op) == name), None)
    if first is None:
        sys.exit(f"cut_model.py: no {name} operator in {src}")
    kept, rest = ops[:first], ops[first:]
    produced = {t for op in kept for t in op.outputs}
    needed = {t for op in rest for t in op.inputs if t >= 0} | set(sg.outputs)
    outputs = sorted(produced & needed)
    sg.operators = kept
    sg.outputs = outputs
    model.signatureDefs = None
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with open(dst, "wb") as f:
        f.write(b.Output())
    print(f"cut_model.py: {len(kept)} of {len(ops)} operators, outputs {outputs}", file=sys.stderr)


if __name__ == "__main__":
    main()
