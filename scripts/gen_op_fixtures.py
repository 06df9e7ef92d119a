#!/usr/bin/env python3
"""Generate single-operator reference fixtures with TFLite's reference kernels.

Each case is a tiny one-operator model built here with the flatbuffer schema,
run with `OpResolverType.BUILTIN_REF`; the inputs and the exact outputs are
written to tests/data/ops/<file>.json, which `tests/op_fixtures.rs` replays
through edgecam's interpreter and compares (exactly for integer outputs).

Usage: /tmp/refvenv/bin/python scripts/gen_op_fixtures.py
Needs: ai_edge_litert, numpy, flatbuffers.
"""

import json
import os
import sys

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as S
from ai_edge_litert.interpreter import Interpreter, OpResolverType

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "ops")

TT = {
    "float32": S.TensorType.FLOAT32,
    "float16": S.TensorType.FLOAT16,
    "int32": S.TensorType.INT32,
    "int64": S.TensorType.INT64,
    "uint8": S.TensorType.UINT8,
    "int8": S.TensorType.INT8,
}
NP = {
    "float32": np.float32,
    "float16": np.float16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "int8": np.int8,
}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


def T(dtype, shape, scale=None, zp=None, data=None):
    return {"dtype": dtype, "shape": list(shape), "scale": scale, "zp": zp, "data": data}


def build_model(opcode, tensors, op_in, op_out, opt_type=0, opt=None):
    m = S.ModelT()
    m.version = 3
    oc = S.OperatorCodeT()
    oc.builtinCode = opcode
    oc.deprecatedBuiltinCode = min(opcode, 127)
    oc.version = 1
    m.operatorCodes = [oc]
    m.buffers = [S.BufferT()]
    sg = S.SubGraphT()
    sg.tensors = []
    for i, t in enumerate(tensors):
        tt = S.TensorT()
        tt.name = ("t%d" % i).encode()
        tt.type = TT[t["dtype"]]
        tt.shape = np.array(t["shape"], dtype=np.int32)
        if t["scale"] is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(t["scale"])]
            q.zeroPoint = [int(t["zp"])]
            tt.quantization = q
        b = S.BufferT()
        if t["data"] is not None:
            arr = np.asarray(t["data"], dtype=NP[t["dtype"]]).reshape(t["shape"])
            b.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        m.buffers.append(b)
        tt.buffer = len(m.buffers) - 1
        sg.tensors.append(tt)
    sg.inputs = [i for i, t in enumerate(tensors) if t["data"] is None and i not in op_out]
    sg.outputs = list(op_out)
    op = S.OperatorT()
    op.opcodeIndex = 0
    op.inputs = list(op_in)
    op.outputs = list(op_out)
    if opt is not None:
        op.builtinOptionsType = opt_type
        op.builtinOptions = opt
    sg.operators = [op]
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run(model, feeds):
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for d, v in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], v)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def jlist(a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return [float(x) for x in a.reshape(-1)]
    return [int(x) for x in a.reshape(-1)]


CASES = {}


def case(file, name, op, options, tensors, op_in, op_out, feeds, opcode, opt_type=0, opt=None):
    """feeds: arrays for the non-constant inputs, in tensor order."""
    model = build_model(opcode, tensors, op_in, op_out, opt_type, opt)
    outs = run(model, feeds)
    feed_iter = iter(feeds)
    js_t = []
    for i, t in enumerate(tensors):
        d = dict(t)
        if i in op_out:
            d["data"] = jlist(outs[op_out.index(i)])
            d["role"] = "output"
        elif t["data"] is None:
            d["data"] = jlist(next(feed_iter))
            d["role"] = "input"
        else:
            d["data"] = jlist(np.asarray(t["data"], dtype=NP[t["dtype"]]))
            d["role"] = "const"
        js_t.append(d)
    CASES.setdefault(file, []).append(
        {"name": name, "op": op, "options": options, "tensors": js_t, "inputs": op_in, "outputs": op_out}
    )


ALL_I8 = np.arange(-128, 128, dtype=np.int8)
ALL_U8 = np.arange(0, 256, dtype=np.uint8)


def unary(file, name, op, opcode, dt, sin, zin, sout, zout, options=None, opt_type=0, opt=None):
    x = ALL_I8 if dt == "int8" else ALL_U8
    tensors = [T(dt, [256], sin, zin), T(dt, [256], sout, zout)]
    case(file, name, op, options or {}, tensors, [0], [1], [x], opcode, opt_type, opt)


def gen_unary():
    f = "unary"
    for dt, zo_sig, zo_tanh in (("int8", -128, 0), ("uint8", 0, 128)):
        zoff = 0 if dt == "int8" else 128
        for sin, zin in ((0.1, 3), (0.0625, -20), (0.02, 10)):
            zin_d = zin + zoff
            unary(f, f"logistic_{dt}_{sin}_{zin_d}", "LOGISTIC", S.BuiltinOperator.LOGISTIC, dt, sin, zin_d, 1 / 256, zo_sig)
            unary(f, f"tanh_{dt}_{sin}_{zin_d}", "TANH", S.BuiltinOperator.TANH, dt, sin, zin_d, 1 / 128, zo_tanh)
        for sin, zin, sout, zout in ((0.05, -5, 0.03, -90), (0.1, 20, 0.1, 20), (0.2, 0, 0.01, -128)):
            unary(f, f"hard_swish_{dt}_{sin}_{sout}", "HARD_SWISH", S.BuiltinOperator.HARD_SWISH, dt, sin, zin + zoff, sout, zout + zoff)
        for alpha in (0.2, 0.01):
            o = S.LeakyReluOptionsT()
            o.alpha = alpha
            unary(f, f"leaky_relu_{dt}_{alpha}", "LEAKY_RELU", S.BuiltinOperator.LEAKY_RELU, dt, 0.05, 7 + zoff, 0.04, -3 + zoff,
                  {"alpha": alpha}, S.BuiltinOptions.LeakyReluOptions, o)
        for opname, code in (("RELU", S.BuiltinOperator.RELU), ("RELU6", S.BuiltinOperator.RELU6),
                             ("RELU_N1_TO_1", S.BuiltinOperator.RELU_N1_TO_1)):
            unary(f, f"{opname.lower()}_{dt}", opname, code, dt, 0.05, 7 + zoff, 0.03, -10 + zoff)
        # requantize
        for dt_out, sout, zout in (("int8", 0.07, -3), ("uint8", 0.07, 130), ("int8", 0.02, 50)):
            x = ALL_I8 if dt == "int8" else ALL_U8
            tensors = [T(dt, [256], 0.05, 7 + zoff), T(dt_out, [256], sout, zout)]
            case(f, f"quantize_{dt}_to_{dt_out}_{sout}", "QUANTIZE", {}, tensors, [0], [1], [x], S.BuiltinOperator.QUANTIZE)
        x = ALL_I8 if dt == "int8" else ALL_U8
        tensors = [T(dt, [256], 0.05, 7 + zoff), T("float32", [256])]
        case(f, f"dequantize_{dt}", "DEQUANTIZE", {}, tensors, [0], [1], [x], S.BuiltinOperator.DEQUANTIZE)


def gen_quantize_float():
    f = "quantize"
    rng = np.random.default_rng(1)
    for dt, scale, zp in (("int8", 0.1, 3), ("int8", 0.0137, -20), ("uint8", 0.05, 128), ("int8", 1 / 3, 0)):
        k = np.arange(-300, 300)
        # exact ties (k+0.5)*scale and neighbours, plus random values
        x = np.concatenate([(k + 0.5) * scale, k * scale, rng.normal(0, 40 * scale, 400)]).astype(np.float32)
        tensors = [T("float32", [x.size]), T(dt, [x.size], scale, zp)]
        case(f, f"quantize_f32_{dt}_{scale}", "QUANTIZE", {}, tensors, [0], [1], [x], S.BuiltinOperator.QUANTIZE)


def gen_softmax():
    f = "softmax"
    rng = np.random.default_rng(2)
    for dt, zo in (("int8", -128), ("uint8", 0)):
        for beta in (1.0, 0.5):
            for sin in (0.1, 0.0390625):
                x = rng.integers(-128, 128, size=(16, 10)) if dt == "int8" else rng.integers(0, 256, size=(16, 10))
                x[0, :] = x[0, 0]
                x[1, 3] = 127 if dt == "int8" else 255
                x = x.astype(NP[dt])
                zin = 5 if dt == "int8" else 130
                tensors = [T(dt, [16, 10], sin, zin), T(dt, [16, 10], 1 / 256, zo)]
                o = S.SoftmaxOptionsT()
                o.beta = beta
                case(f, f"softmax_{dt}_{beta}_{sin}", "SOFTMAX", {"beta": beta}, tensors, [0], [1], [x],
                     S.BuiltinOperator.SOFTMAX, S.BuiltinOptions.SoftmaxOptions, o)
    x = rng.normal(0, 3, size=(4, 3, 7)).astype(np.float32)
    o = S.SoftmaxOptionsT()
    o.beta = 0.7
    case(f, "softmax_f32", "SOFTMAX", {"beta": 0.7}, [T("float32", [4, 3, 7]), T("float32", [4, 3, 7])], [0], [1], [x],
         S.BuiltinOperator.SOFTMAX, S.BuiltinOptions.SoftmaxOptions, o)


def gen_resize():
    f = "resize"
    rng = np.random.default_rng(3)
    for dt in ("int8", "uint8", "float32"):
        for (ih, iw, oh, ow) in ((5, 7, 9, 13), (4, 4, 8, 8), (6, 5, 3, 4), (3, 3, 7, 2)):
            shp = [2, ih, iw, 3]
            if dt == "float32":
                x = rng.normal(0, 1, size=shp).astype(np.float32)
                q = (None, None)
            elif dt == "int8":
                x = rng.integers(-128, 128, size=shp).astype(np.int8)
                q = (0.05, -3)
            else:
                x = rng.integers(0, 256, size=shp).astype(np.uint8)
                q = (0.05, 125)
            for ac, hp in ((False, False), (True, False), (False, True)):
                for opname, code, optt, ocls in (
                    ("RESIZE_BILINEAR", S.BuiltinOperator.RESIZE_BILINEAR, S.BuiltinOptions.ResizeBilinearOptions, S.ResizeBilinearOptionsT),
                    ("RESIZE_NEAREST_NEIGHBOR", S.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR, S.BuiltinOptions.ResizeNearestNeighborOptions, S.ResizeNearestNeighborOptionsT),
                ):
                    o = ocls()
                    o.alignCorners = ac
                    o.halfPixelCenters = hp
                    tensors = [T(dt, shp, *q), T("int32", [2], data=[oh, ow]), T(dt, [2, oh, ow, 3], *q)]
                    case(f, f"{opname.lower()}_{dt}_{ih}x{iw}_{oh}x{ow}_ac{int(ac)}_hp{int(hp)}", opname,
                         {"align_corners": ac, "half_pixel_centers": hp}, tensors, [0, 1], [2], [x], code, optt, o)


def gen_binary():
    f = "binary"
    rng = np.random.default_rng(4)
    shapes = (([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([1, 3, 1, 5], [2, 1, 4, 1]), ([3, 1], [1]), ([2, 1, 3, 1, 2], [1, 2, 1, 4, 1]))
    for opname, code, optt, ocls in (
        ("ADD", S.BuiltinOperator.ADD, S.BuiltinOptions.AddOptions, S.AddOptionsT),
        ("SUB", S.BuiltinOperator.SUB, S.BuiltinOptions.SubOptions, S.SubOptionsT),
        ("MUL", S.BuiltinOperator.MUL, S.BuiltinOptions.MulOptions, S.MulOptionsT),
    ):
        for dt in ("float32", "int8", "uint8", "int32"):
            for si, (sa, sb) in enumerate(shapes):
                for act in ("NONE", "RELU6") if si % 2 == 0 else ("RELU", "RELU_N1_TO_1"):
                    so = np.broadcast_shapes(tuple(sa), tuple(sb))
                    if dt == "float32":
                        a = rng.normal(0, 3, sa).astype(np.float32)
                        b = rng.normal(0, 3, sb).astype(np.float32)
                        qa = qb = qo = (None, None)
                    elif dt == "int32":
                        a = rng.integers(-1000, 1000, sa).astype(np.int32)
                        b = rng.integers(-1000, 1000, sb).astype(np.int32)
                        qa = qb = qo = (None, None)
                    else:
                        lo, hi, off = (-128, 128, 0) if dt == "int8" else (0, 256, 128)
                        a = rng.integers(lo, hi, sa).astype(NP[dt])
                        b = rng.integers(lo, hi, sb).astype(NP[dt])
                        qa, qb = (0.05, 3 + off), (0.031, -7 + off)
                        qo = (0.02, 10 + off) if opname == "MUL" else (0.06, -2 + off)
                    o = ocls()
                    o.fusedActivationFunction = ACT[act]
                    tensors = [T(dt, sa, *qa), T(dt, sb, *qb), T(dt, list(so), *qo)]
                    case(f, f"{opname.lower()}_{dt}_{si}_{act}", opname, {"activation": act}, tensors, [0, 1], [2],
                         [a, b], code, optt, o)


def gen_concat():
    f = "concat"
    rng = np.random.default_rng(5)
    for dt in ("float32", "int8", "uint8"):
        for axis in (3, -1, 1, 0):
            shp = [[2, 3, 2, 4], [2, 3, 2, 4], [2, 3, 2, 4]]
            ax = axis % 4
            shp[1][ax] = 1
            shp[2][ax] = 3
            oshape = list(shp[0])
            oshape[ax] = sum(s[ax] for s in shp)
            if dt == "float32":
                xs = [rng.normal(0, 1, s).astype(np.float32) for s in shp]
                qs = [(None, None)] * 4
            else:
                lo, hi, off = (-128, 128, 0) if dt == "int8" else (0, 256, 128)
                xs = [rng.integers(lo, hi, s).astype(NP[dt]) for s in shp]
                # TFLite rejects int8 inputs whose quantization differs from the output's.
                if axis == 0 or dt == "int8":
                    qs = [(0.05, 3 + off)] * 4
                else:
                    qs = [(0.05, 3 + off), (0.1, -10 + off), (0.0123, 40 + off), (0.07, 0 + off)]
            o = S.ConcatenationOptionsT()
            o.axis = axis
            tensors = [T(dt, s, *q) for s, q in zip(shp, qs[:3])] + [T(dt, oshape, *qs[3])]
            case(f, f"concat_{dt}_axis{axis}", "CONCATENATION", {"axis": axis, "activation": "NONE"}, tensors,
                 [0, 1, 2], [3], xs, S.BuiltinOperator.CONCATENATION, S.BuiltinOptions.ConcatenationOptions, o)


def gen_pad():
    f = "pad"
    rng = np.random.default_rng(6)
    for dt in ("float32", "int8", "uint8"):
        x = rng.integers(0, 100, [1, 2, 3, 2]).astype(NP[dt])
        q = (None, None) if dt == "float32" else ((0.1, -5) if dt == "int8" else (0.1, 133))
        pads = [[0, 0], [1, 2], [2, 0], [0, 1]]
        tensors = [T(dt, [1, 2, 3, 2], *q), T("int32", [4, 2], data=pads), T(dt, [1, 5, 5, 3], *q)]
        case(f, f"pad_{dt}", "PAD", {}, tensors, [0, 1], [2], [x], S.BuiltinOperator.PAD)
        cval = [7] if dt != "float32" else [1.5]
        tensors = [T(dt, [1, 2, 3, 2], *q), T("int64", [4, 2], data=pads), T(dt, [], *q, data=cval),
                   T(dt, [1, 5, 5, 3], *q)]
        case(f, f"padv2_{dt}", "PADV2", {}, tensors, [0, 1, 2], [3], [x], S.BuiltinOperator.PADV2)


def gen_shape_ops():
    f = "shape"
    rng = np.random.default_rng(7)
    # STRIDED_SLICE: (input shape, begin, end, strides, begin_mask, end_mask, ellipsis, new_axis, shrink, offset)
    specs = [
        ([2, 5, 6, 3], [0, 1, 0, 0], [2, 4, 6, 3], [1, 1, 2, 1], 0, 0, 0, 0, 0, False),
        ([2, 5, 6, 3], [0, -1, -2, 0], [2, -5, 0, 3], [1, -1, -2, 1], 0, 0, 0, 0, 0, False),
        ([2, 5, 6, 3], [1, 2, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], 0b1110, 0b1110, 0, 0, 0b0011, False),
        ([2, 5, 6, 3], [0, 1], [0, 3], [1, 1], 0, 0, 0b01, 0, 0, False),
        ([2, 5, 6, 3], [0, 0, 1], [0, 0, 2], [1, 1, 1], 0, 0, 0b001, 0b010, 0b100, False),
        ([5, 6], [0, 1, 0], [0, 4, 0], [1, 1, 1], 0b101, 0b101, 0, 0b001, 0, False),
        ([2, 5, 6, 3], [0, 1, 1, 0], [2, 2, 3, 3], [1, 1, 2, 1], 0, 0, 0, 0, 0, True),
        ([2, 5, 6, 3], [-1, 0, 5, 2], [0, 5, 0, 0], [1, 2, -2, -1], 0b0001, 0b1100, 0, 0, 0, False),
        ([7], [-3], [-1], [1], 0, 0, 0, 0, 0, False),
        ([7], [-1], [0], [1], 0, 0, 0, 0, 1, False),
        ([2, 5, 6, 3], [1, 0, 2], [2, 0, 0], [1, 1, -1], 0, 0b010, 0b010, 0, 0b001, False),
        ([2, 5, 6, 3], [0, 0, 0], [0, 0, 0], [1, 1, 1], 0b001, 0b001, 0b010, 0b100, 0, False),
        ([2, 5, 6, 3], [0, -10, 1, -1], [5, 10, 100, -4], [1, 1, 3, -1], 0, 0, 0, 0, 0, False),
        ([2, 5, 6, 3], [0, 0, 0, 0], [0, 0, 0, 0], [-1, -1, -1, -1], 0b1111, 0b1111, 0, 0, 0, False),
        ([2, 5, 6, 3], [0, 2, 0, 1], [1, 2, 3, 1], [1, 1, 1, 1], 0, 0, 0, 0, 0b0001, True),
        ([4, 6], [0, 0, 0], [0, 0, 0], [1, 1, 1], 0, 0, 0, 0b111, 0, False),
    ]
    for k, (shp, b, e, st, bm, em, ell, na, sh, off) in enumerate(specs):
        x = rng.integers(-128, 128, shp).astype(np.int8)
        o = S.StridedSliceOptionsT()
        o.beginMask, o.endMask, o.ellipsisMask, o.newAxisMask, o.shrinkAxisMask, o.offset = bm, em, ell, na, sh, off
        n = len(b)
        # find output shape by running with a dynamic-shaped guess: use numpy-free probe via TFLite itself
        tensors = [T("int8", shp, 0.1, 2), T("int32", [n], data=b), T("int32", [n], data=e), T("int32", [n], data=st),
                   T("int8", [1], 0.1, 2)]
        model = build_model(S.BuiltinOperator.STRIDED_SLICE, tensors, [0, 1, 2, 3], [4], S.BuiltinOptions.StridedSliceOptions, o)
        out = run(model, [x])[0]
        tensors[4] = T("int8", list(out.shape), 0.1, 2)
        opts = {"begin_mask": bm, "end_mask": em, "ellipsis_mask": ell, "new_axis_mask": na, "shrink_axis_mask": sh, "offset": off}
        case(f, f"strided_slice_{k}", "STRIDED_SLICE", opts, tensors, [0, 1, 2, 3], [4], [x], S.BuiltinOperator.STRIDED_SLICE,
             S.BuiltinOptions.StridedSliceOptions, o)
    for k, (shp, perm) in enumerate((([2, 3, 4], [2, 0, 1]), ([1, 2, 3, 4, 5, 2], [5, 3, 1, 0, 2, 4]), ([3, 4], [1, 0]))):
        x = rng.normal(0, 1, shp).astype(np.float32)
        oshape = [shp[p] for p in perm]
        tensors = [T("float32", shp), T("int32", [len(perm)], data=perm), T("float32", oshape)]
        case(f, f"transpose_{k}", "TRANSPOSE", {}, tensors, [0, 1], [2], [x], S.BuiltinOperator.TRANSPOSE)
    for k, (shp, axis, n) in enumerate((([2, 6, 3], 1, 3), ([4, 2], -2, 2), ([2, 3, 4], 2, 1))):
        x = rng.integers(0, 255, shp).astype(np.uint8)
        ax = axis % len(shp)
        oshape = list(shp)
        oshape[ax] //= n
        o = S.SplitOptionsT()
        o.numSplits = n
        tensors = [T("int32", [], data=[axis]), T("uint8", shp, 0.5, 128)] + [T("uint8", oshape, 0.5, 128) for _ in range(n)]
        case(f, f"split_{k}", "SPLIT", {"num_splits": n}, tensors, [0, 1], list(range(2, 2 + n)), [x],
             S.BuiltinOperator.SPLIT, S.BuiltinOptions.SplitOptions, o)


def gen_unary_float():
    f = "unary"
    x = np.concatenate([np.linspace(-20, 20, 401), [-9.0, -8.999, 16.6, 16.7, 0.0, -3.0, 3.0]]).astype(np.float32)
    n = x.size
    for opname, code in (("LOGISTIC", S.BuiltinOperator.LOGISTIC), ("TANH", S.BuiltinOperator.TANH),
                         ("RELU", S.BuiltinOperator.RELU), ("RELU6", S.BuiltinOperator.RELU6),
                         ("RELU_N1_TO_1", S.BuiltinOperator.RELU_N1_TO_1), ("HARD_SWISH", S.BuiltinOperator.HARD_SWISH)):
        case(f, f"{opname.lower()}_f32", opname, {}, [T("float32", [n]), T("float32", [n])], [0], [1], [x], code)
    o = S.LeakyReluOptionsT()
    o.alpha = 0.1
    case(f, "leaky_relu_f32", "LEAKY_RELU", {"alpha": 0.1}, [T("float32", [n]), T("float32", [n])], [0], [1], [x],
         S.BuiltinOperator.LEAKY_RELU, S.BuiltinOptions.LeakyReluOptions, o)


def main():
    gen_unary()
    gen_unary_float()
    gen_quantize_float()
    gen_softmax()
    gen_resize()
    gen_binary()
    gen_concat()
    gen_pad()
    gen_shape_ops()
    os.makedirs(OUT_DIR, exist_ok=True)
    for file, cases in CASES.items():
        with open(os.path.join(OUT_DIR, file + ".json"), "w") as fh:
            json.dump({"generator": "scripts/gen_op_fixtures.py", "resolver": "BUILTIN_REF", "cases": cases}, fh,
                      separators=(",", ":"))
        print(file, len(cases), file=sys.stderr)


if __name__ == "__main__":
    main()
