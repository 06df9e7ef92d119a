#!/usr/bin/env python3
"""Generate single-operator reference fixtures with TFLite's reference kernels.

Each case is a tiny one-operator model built here with the flatbuffer schema,
run with `OpResolverType.BUILTIN_REF` (ai_edge_litert); the inputs and the
exact outputs are written to tests/data/ops/:
- <file>.json (unary, quantize, softmax, resize, binary, concat, pad, shape),
  which `tests/op_fixtures.rs` replays through edgecam's interpreter and
  compares (exactly for integer outputs);
- conv_pool_fc_mean.json (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
  MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, with per-channel quantization), which
  `tests/ops_conv.rs` replays (bit-exact for int8/uint8).

Every section has its own seed, so the output is the same on every run.

Usage: .venv/bin/python scripts/gen_op_fixtures.py
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


# ---------------------------------------------------------------- CONV_2D, DEPTHWISE_CONV_2D,
# FULLY_CONNECTED, pools and MEAN: conv_pool_fc_mean.json, replayed by tests/ops_conv.rs. Its
# tensors carry per-axis quantization and the expected output (a format of its own), so the
# section builds and runs its models itself.

# Reseeded by gen_conv_pool_fc_mean().
RNG = np.random.default_rng(20261127)
PAD = {"SAME": 0, "VALID": 1}
CONV_OPS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 4, "FULLY_CONNECTED": 9,
       "MAX_POOL_2D": 17, "AVERAGE_POOL_2D": 1, "MEAN": 40}


def tensor(dtype, shape, data=None, scale=None, zp=None, axis=0):
    t = {"dtype": dtype, "shape": list(shape)}
    if scale is not None:
        t["scale"] = [float(np.float32(v)) for v in np.atleast_1d(scale)]
        t["zero_point"] = [int(v) for v in np.atleast_1d(zp if zp is not None else 0)]
        t["axis"] = axis
    if data is not None:
        t["data"] = np.asarray(data).astype(NP[dtype]).reshape(-1).tolist()
    return t


def options_t(op, o):
    if op == "CONV_2D":
        x = S.Conv2DOptionsT()
        x.padding, x.strideH, x.strideW = PAD[o["padding"]], o["stride_h"], o["stride_w"]
        x.dilationHFactor, x.dilationWFactor = o["dilation_h"], o["dilation_w"]
        x.fusedActivationFunction = ACT[o["activation"]]
        return S.BuiltinOptions.Conv2DOptions, x
    if op == "DEPTHWISE_CONV_2D":
        x = S.DepthwiseConv2DOptionsT()
        x.padding, x.strideH, x.strideW = PAD[o["padding"]], o["stride_h"], o["stride_w"]
        x.dilationHFactor, x.dilationWFactor = o["dilation_h"], o["dilation_w"]
        x.depthMultiplier = o["depth_multiplier"]
        x.fusedActivationFunction = ACT[o["activation"]]
        return S.BuiltinOptions.DepthwiseConv2DOptions, x
    if op == "FULLY_CONNECTED":
        x = S.FullyConnectedOptionsT()
        x.fusedActivationFunction = ACT[o["activation"]]
        x.keepNumDims = o["keep_num_dims"]
        return S.BuiltinOptions.FullyConnectedOptions, x
    if op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        x = S.Pool2DOptionsT()
        x.padding, x.strideH, x.strideW = PAD[o["padding"]], o["stride_h"], o["stride_w"]
        x.filterHeight, x.filterWidth = o["filter_h"], o["filter_w"]
        x.fusedActivationFunction = ACT[o["activation"]]
        return S.BuiltinOptions.Pool2DOptions, x
    if op == "MEAN":
        x = S.ReducerOptionsT()
        x.keepDims = o["keep_dims"]
        return S.BuiltinOptions.ReducerOptions, x
    raise ValueError(op)


def conv_build_model(case):
    m = S.ModelT()
    m.version = 3
    oc = S.OperatorCodeT()
    oc.builtinCode = CONV_OPS[case["op"]]
    oc.deprecatedBuiltinCode = min(CONV_OPS[case["op"]], 127)
    oc.version = 1
    m.operatorCodes = [oc]
    m.buffers = [S.BufferT()]
    g = S.SubGraphT()
    g.tensors = []
    all_t = [t for t in case["inputs"]] + [case["output"]]
    idx = []
    for i, t in enumerate(all_t):
        if t is None:
            idx.append(-1)
            continue
        tt = S.TensorT()
        tt.name = f"t{i}"
        tt.type = TT[t["dtype"]]
        tt.shape = t["shape"]
        if "scale" in t:
            q = S.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = t["scale"], t["zero_point"], t["axis"]
            tt.quantization = q
        b = S.BufferT()
        if "data" in t and t.get("const", True):
            b.data = np.asarray(t["data"], NP[t["dtype"]]).tobytes()
        m.buffers.append(b)
        tt.buffer = len(m.buffers) - 1
        idx.append(len(g.tensors))
        g.tensors.append(tt)
    op = S.OperatorT()
    op.opcodeIndex = 0
    op.inputs = idx[:-1]
    # An omitted trailing bias is left out (CONV_2D rejects a -1 operand).
    while op.inputs and op.inputs[-1] == -1:
        op.inputs.pop()
    op.outputs = [idx[-1]]
    op.builtinOptionsType, op.builtinOptions = options_t(case["op"], case["options"])
    g.operators = [op]
    g.inputs = [idx[0]]
    g.outputs = [idx[-1]]
    m.subgraphs = [g]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def conv_run(case):
    model = conv_build_model(case)
    it = Interpreter(model_content=model,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    inp = case["inputs"][0]
    x = np.asarray(inp["data"], NP[inp["dtype"]]).reshape(inp["shape"])
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    case["output"]["shape"] = list(y.shape)
    case["expected"] = y.reshape(-1).tolist()
    return case


def qrand(dtype, shape):
    if dtype == "int8":
        return RNG.integers(-128, 128, size=shape)
    return RNG.integers(0, 256, size=shape)


def conv_like(name, op, dtype, in_shape, k, out_c, opts, per_channel=True,
              in_zp=None, out_zp=None, filter_zp=None, bias=True, mult=1):
    """CONV_2D (filter OHWI) or DEPTHWISE (filter [1,kh,kw,C*M])."""
    kh, kw = k
    cin = in_shape[-1]
    if op == "CONV_2D":
        fshape, axis, ksum = [out_c, kh, kw, cin], 0, kh * kw * cin
    else:
        out_c = cin * mult
        fshape, axis, ksum = [1, kh, kw, out_c], 3, kh * kw
    case = {"name": name, "op": op, "options": opts}
    if dtype == "float32":
        x = RNG.standard_normal(in_shape).astype(np.float32)
        w = (RNG.standard_normal(fshape) / np.sqrt(ksum)).astype(np.float32)
        bvals = RNG.standard_normal(out_c).astype(np.float32) * 0.3
        case["inputs"] = [tensor("float32", in_shape, x), tensor("float32", fshape, w),
                          tensor("float32", [out_c], bvals) if bias else None]
        case["output"] = tensor("float32", [1])
        return conv_run(case)
    in_s = 0.02 + RNG.random() * 0.05
    if in_zp is None:
        in_zp = int(RNG.integers(-20, 20)) if dtype == "int8" else int(RNG.integers(100, 150))
    x = qrand(dtype, in_shape)
    if dtype == "int8":
        w = RNG.integers(-127, 128, size=fshape)
        fs = (0.002 + RNG.random(out_c) * 0.01) if per_channel else np.array([0.006])
        fzp = [0] * len(fs)
    else:
        fzp_v = filter_zp if filter_zp is not None else int(RNG.integers(100, 160))
        w = RNG.integers(0, 256, size=fshape)
        fs, fzp = np.array([0.004]), [fzp_v]
    fs = fs.astype(np.float32)
    acc_std = np.sqrt(ksum) * 70 * 70
    out_s = float(in_s * float(np.mean(fs)) * acc_std / 60)
    if out_zp is None:
        out_zp = int(RNG.integers(-10, 10)) if dtype == "int8" else 128
    bsc = np.float32(in_s) * (fs if len(fs) == out_c else np.full(out_c, fs[0]))
    bvals = np.round(RNG.standard_normal(out_c) * 0.5 / bsc).astype(np.int32)
    case["inputs"] = [
        tensor(dtype, in_shape, x, in_s, in_zp),
        tensor(dtype, fshape, w, fs, fzp, axis),
        tensor("int32", [out_c], bvals, bsc, [0] * out_c, 0) if bias else None,
    ]
    # Widen the output scale until at most a quarter of the outputs saturate.
    for _ in range(8):
        case["output"] = tensor(dtype, [1], None, out_s, out_zp)
        conv_run(case)
        e = np.asarray(case["expected"])
        lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
        sat = np.zeros(e.shape, bool)
        if out_zp != lo:
            sat |= e == lo
        if out_zp != hi:
            sat |= e == hi
        if np.mean(sat) <= 0.25:
            break
        out_s *= 3
    return case


def conv_opts(padding, sh, sw, dh=1, dw=1, act="NONE", mult=None):
    o = {"padding": padding, "stride_h": sh, "stride_w": sw, "dilation_h": dh,
         "dilation_w": dw, "activation": act}
    if mult is not None:
        o["depth_multiplier"] = mult
    return o


def fc(name, dtype, in_shape, units, act="NONE", keep=False, per_channel=False, bias=True,
       filter_zp=None):
    depth = in_shape[-1]
    case = {"name": name, "op": "FULLY_CONNECTED",
            "options": {"activation": act, "keep_num_dims": keep}}
    if dtype == "float32":
        x = RNG.standard_normal(in_shape).astype(np.float32)
        w = (RNG.standard_normal([units, depth]) / np.sqrt(depth)).astype(np.float32)
        b = RNG.standard_normal(units).astype(np.float32) * 0.3
        case["inputs"] = [tensor("float32", in_shape, x), tensor("float32", [units, depth], w),
                          tensor("float32", [units], b) if bias else None]
        case["output"] = tensor("float32", [1])
        return conv_run(case)
    in_s, in_zp = 0.03, (5 if dtype == "int8" else 120)
    x = qrand(dtype, in_shape)
    if dtype == "int8":
        w = RNG.integers(-127, 128, size=[units, depth])
        fs = (0.002 + RNG.random(units) * 0.01) if per_channel else np.array([0.005])
        fzp = [0] * len(fs)
    else:
        w = RNG.integers(0, 256, size=[units, depth])
        fs, fzp = np.array([0.004]), [filter_zp if filter_zp is not None else 131]
    fs = fs.astype(np.float32)
    out_s = float(in_s * float(np.mean(fs)) * np.sqrt(depth) * 4900 / 60)
    out_zp = -3 if dtype == "int8" else 127
    bsc = np.float32(in_s) * (fs if len(fs) == units else np.full(units, fs[0]))
    b = np.round(RNG.standard_normal(units) * 0.5 / bsc).astype(np.int32)
    case["inputs"] = [tensor(dtype, in_shape, x, in_s, in_zp),
                      tensor(dtype, [units, depth], w, fs, fzp, 0),
                      tensor("int32", [units], b, bsc, [0] * units, 0) if bias else None]
    case["output"] = tensor(dtype, [1], None, out_s, out_zp)
    return conv_run(case)


def pool(name, op, dtype, in_shape, f, padding, stride, act="NONE", scale=0.05, zp=None):
    case = {"name": name, "op": op,
            "options": {"padding": padding, "stride_h": stride[0], "stride_w": stride[1],
                        "filter_h": f[0], "filter_w": f[1], "activation": act}}
    if dtype == "float32":
        case["inputs"] = [tensor("float32", in_shape, RNG.standard_normal(in_shape) * 4)]
        case["output"] = tensor("float32", [1])
    else:
        zp = zp if zp is not None else (-7 if dtype == "int8" else 131)
        case["inputs"] = [tensor(dtype, in_shape, qrand(dtype, in_shape), scale, zp)]
        case["output"] = tensor(dtype, [1], None, scale, zp)
    return conv_run(case)


def mean(name, dtype, in_shape, axes, keep, in_q=(0.05, 3), out_q=(0.02, -5)):
    case = {"name": name, "op": "MEAN", "options": {"keep_dims": keep}}
    axis_t = tensor("int32", [len(axes)], np.array(axes))
    if dtype == "float32":
        case["inputs"] = [tensor("float32", in_shape, RNG.standard_normal(in_shape)), axis_t]
        case["output"] = tensor("float32", [1])
    else:
        case["inputs"] = [tensor(dtype, in_shape, qrand(dtype, in_shape), *in_q), axis_t]
        case["output"] = tensor(dtype, [1], None, *out_q)
    return conv_run(case)

def gen_conv_pool_fc_mean():
    global RNG
    RNG = np.random.default_rng(20261127)
    cases = []
    C = cases.append
    # CONV_2D
    C(conv_like("conv_f32_same_s1_relu", "CONV_2D", "float32", [1, 5, 5, 3], (3, 3), 4,
                conv_opts("SAME", 1, 1, act="RELU")))
    C(conv_like("conv_f32_valid_s2_d2_nobias", "CONV_2D", "float32", [2, 9, 8, 3], (3, 2), 5,
                conv_opts("VALID", 2, 1, 2, 2)))
    C(conv_like("conv_i8_same_s2_relu6", "CONV_2D", "int8", [1, 7, 6, 3], (3, 3), 4,
                conv_opts("SAME", 2, 2, act="RELU6")))
    C(conv_like("conv_i8_same_s1_d2_zp_extreme", "CONV_2D", "int8", [1, 8, 8, 4], (3, 3), 6,
                conv_opts("SAME", 1, 1, 2, 2), in_zp=-128, out_zp=127))
    C(conv_like("conv_i8_valid_s2_pertensor_nobias", "CONV_2D", "int8", [2, 7, 9, 5], (2, 3), 3,
                conv_opts("VALID", 2, 2), per_channel=False, in_zp=127, out_zp=-128))
    C(conv_like("conv_i8_1x1", "CONV_2D", "int8", [1, 4, 4, 16], (1, 1), 8,
                conv_opts("SAME", 1, 1, act="RELU")))
    C(conv_like("conv_u8_same_s1_relu", "CONV_2D", "uint8", [1, 6, 6, 3], (3, 3), 4,
                conv_opts("SAME", 1, 1, act="RELU")))
    C(conv_like("conv_u8_valid_s2_d2", "CONV_2D", "uint8", [1, 9, 9, 2], (3, 3), 3,
                conv_opts("VALID", 2, 2, 2, 2), filter_zp=0, in_zp=0))
    C(conv_like("conv_u8_same_s2_relu6", "CONV_2D", "uint8", [1, 8, 7, 4], (3, 3), 5,
                conv_opts("SAME", 2, 2, act="RELU6"), filter_zp=255))
    # DEPTHWISE_CONV_2D
    C(conv_like("dw_f32_same_s2_m2", "DEPTHWISE_CONV_2D", "float32", [1, 7, 7, 3], (3, 3), 0,
                conv_opts("SAME", 2, 2, act="RELU6", mult=2), mult=2))
    C(conv_like("dw_f32_valid_d2", "DEPTHWISE_CONV_2D", "float32", [2, 8, 8, 4], (3, 3), 0,
                conv_opts("VALID", 1, 1, 2, 2, mult=1)))
    C(conv_like("dw_i8_same_s1_relu6", "DEPTHWISE_CONV_2D", "int8", [1, 6, 6, 8], (3, 3), 0,
                conv_opts("SAME", 1, 1, act="RELU6", mult=1)))
    C(conv_like("dw_i8_same_s2_m2", "DEPTHWISE_CONV_2D", "int8", [1, 9, 8, 3], (3, 3), 0,
                conv_opts("SAME", 2, 2, mult=2), mult=2, in_zp=-128, out_zp=127))
    C(conv_like("dw_i8_valid_d2_m3_nobias", "DEPTHWISE_CONV_2D", "int8", [2, 9, 9, 2], (3, 2), 0,
                conv_opts("VALID", 1, 2, 2, 2, mult=3), mult=3, bias=False))
    C(conv_like("dw_u8_same_s2", "DEPTHWISE_CONV_2D", "uint8", [1, 7, 7, 4], (3, 3), 0,
                conv_opts("SAME", 2, 2, act="RELU", mult=1)))
    C(conv_like("dw_u8_valid_m2", "DEPTHWISE_CONV_2D", "uint8", [1, 6, 5, 3], (3, 3), 0,
                conv_opts("VALID", 1, 1, mult=2), mult=2, filter_zp=255, in_zp=255))
    # FULLY_CONNECTED
    C(fc("fc_f32_relu", "float32", [2, 10], 6, act="RELU"))
    C(fc("fc_f32_keepdims_nobias", "float32", [2, 3, 8], 5, keep=True, bias=False))
    C(fc("fc_i8_pertensor", "int8", [3, 20], 7))
    C(fc("fc_i8_perchannel_relu6", "int8", [2, 16], 5, act="RELU6", per_channel=True))
    C(fc("fc_i8_flatten_nobias", "int8", [1, 2, 3, 4], 5, bias=False))
    C(fc("fc_u8", "uint8", [2, 24], 6))
    C(fc("fc_u8_relu_keepdims", "uint8", [1, 3, 12], 4, act="RELU", keep=True, filter_zp=0))
    # Pools
    for dt in ("float32", "int8", "uint8"):
        C(pool(f"maxpool_{dt}_same_3x3_s2", "MAX_POOL_2D", dt, [1, 7, 6, 3], (3, 3), "SAME", (2, 2)))
        C(pool(f"maxpool_{dt}_valid_2x2_relu6", "MAX_POOL_2D", dt, [2, 6, 6, 2], (2, 2), "VALID",
               (2, 2), act="RELU6"))
        C(pool(f"avgpool_{dt}_same_3x3_s2", "AVERAGE_POOL_2D", dt, [1, 7, 6, 3], (3, 3), "SAME",
               (2, 2)))
        C(pool(f"avgpool_{dt}_same_3x2_s1_relu", "AVERAGE_POOL_2D", dt, [2, 5, 5, 2], (3, 2), "SAME",
               (1, 1), act="RELU"))
        C(pool(f"avgpool_{dt}_valid_global", "AVERAGE_POOL_2D", dt, [1, 4, 5, 6], (4, 5), "VALID",
               (1, 1)))
    # MEAN
    C(mean("mean_f32_hw_keep", "float32", [2, 4, 5, 3], [1, 2], True))
    C(mean("mean_f32_last_nokeep", "float32", [2, 3, 7], [-1], False))
    C(mean("mean_i8_hw_keep", "int8", [2, 5, 6, 4], [1, 2], True))
    C(mean("mean_i8_hw_keep_21", "int8", [1, 7, 7, 3], [2, 1], True, (0.1, -128), (0.11, -128)))
    C(mean("mean_i8_hw_nokeep_rescale", "int8", [2, 5, 6, 4], [1, 2], False))
    C(mean("mean_i8_same_scale_axis0_2", "int8", [3, 4, 5], [0, 2], False, (0.05, 3), (0.05, 3)))
    C(mean("mean_i8_hw_keep_same_scale", "int8", [1, 3, 3, 5], [1, 2], True, (0.05, 3), (0.05, 3)))
    C(mean("mean_u8_hw_keep", "uint8", [2, 5, 6, 4], [1, 2], True, (0.05, 130), (0.02, 120)))
    C(mean("mean_u8_last_rescale", "uint8", [2, 3, 9], [-1], True, (0.05, 130), (0.03, 100)))
    C(mean("mean_u8_same_scale", "uint8", [4, 6], [1], False, (0.05, 130), (0.05, 130)))
    # More variants: RELU_N1_TO_1, batch 2, strides larger than the filter, 1x1 inputs.
    C(conv_like("conv_i8_batch2_relun1", "CONV_2D", "int8", [2, 5, 4, 3], (2, 2), 3,
                conv_opts("SAME", 1, 2, act="RELU_N1_TO_1")))
    C(conv_like("conv_f32_1x1_input_same", "CONV_2D", "float32", [1, 1, 1, 4], (3, 3), 2,
                conv_opts("SAME", 2, 2)))
    C(conv_like("dw_i8_s3_d3_m2", "DEPTHWISE_CONV_2D", "int8", [1, 11, 10, 2], (2, 3), 0,
                conv_opts("SAME", 3, 3, 3, 3, mult=2), mult=2))
    C(fc("fc_i8_keepdims_relu", "int8", [2, 2, 6], 3, act="RELU", keep=True))
    for dt in ("int8", "uint8"):
        C(pool(f"maxpool_{dt}_stride_gt_filter", "MAX_POOL_2D", dt, [1, 9, 9, 2], (2, 2), "SAME",
               (3, 3)))
        C(pool(f"avgpool_{dt}_stride_gt_filter_relun1", "AVERAGE_POOL_2D", dt, [1, 9, 9, 2], (2, 2),
               "SAME", (3, 3), act="RELU_N1_TO_1"))
    C(mean("mean_u8_hw_nokeep", "uint8", [1, 3, 4, 5], [1, 2], False, (0.05, 130), (0.02, 120)))
    C(mean("mean_i8_all_axes", "int8", [2, 3, 4], [0, 1, 2], False, (0.05, -128), (0.05, -100)))
    out = os.path.join(OUT_DIR, "conv_pool_fc_mean.json")
    with open(out, "w") as f:
        json.dump({"generator": "scripts/gen_op_fixtures.py (ai_edge_litert BUILTIN_REF)",
                   "cases": cases}, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {out}")


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
    gen_conv_pool_fc_mean()


if __name__ == "__main__":
    main()
