#!/usr/bin/env python3
"""Generate reference outputs of single-operator TFLite models (CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, AVERAGE_POOL_2D, MEAN) with
TFLite's reference kernels (BUILTIN_REF resolver of ai_edge_litert).

Writes tests/data/ops/conv_pool_fc_mean.json, read by tests/ops_oracle.rs.
Usage: /tmp/refvenv/bin/python scripts/gen_ops_fixtures.py
"""
import json
import os

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as s
from ai_edge_litert.interpreter import Interpreter, OpResolverType

RNG = np.random.default_rng(20261127)
TT = {"float32": s.TensorType.FLOAT32, "int8": s.TensorType.INT8,
      "uint8": s.TensorType.UINT8, "int32": s.TensorType.INT32}
NP = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int32": np.int32}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PAD = {"SAME": 0, "VALID": 1}
OPS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 4, "FULLY_CONNECTED": 9,
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
        x = s.Conv2DOptionsT()
        x.padding, x.strideH, x.strideW = PAD[o["padding"]], o["stride_h"], o["stride_w"]
        x.dilationHFactor, x.dilationWFactor = o["dilation_h"], o["dilation_w"]
        x.fusedActivationFunction = ACT[o["activation"]]
        return s.BuiltinOptions.Conv2DOptions, x
    if op == "DEPTHWISE_CONV_2D":
        x = s.DepthwiseConv2DOptionsT()
        x.padding, x.strideH, x.strideW = PAD[o["padding"]], o["stride_h"], o["stride_w"]
        x.dilationHFactor, x.dilationWFactor = o["dilation_h"], o["dilation_w"]
        x.depthMultiplier = o["depth_multiplier"]
        x.fusedActivationFunction = ACT[o["activation"]]
        return s.BuiltinOptions.DepthwiseConv2DOptions, x
    if op == "FULLY_CONNECTED":
        x = s.FullyConnectedOptionsT()
        x.fusedActivationFunction = ACT[o["activation"]]
        x.keepNumDims = o["keep_num_dims"]
        return s.BuiltinOptions.FullyConnectedOptions, x
    if op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        x = s.Pool2DOptionsT()
        x.padding, x.strideH, x.strideW = PAD[o["padding"]], o["stride_h"], o["stride_w"]
        x.filterHeight, x.filterWidth = o["filter_h"], o["filter_w"]
        x.fusedActivationFunction = ACT[o["activation"]]
        return s.BuiltinOptions.Pool2DOptions, x
    if op == "MEAN":
        x = s.ReducerOptionsT()
        x.keepDims = o["keep_dims"]
        return s.BuiltinOptions.ReducerOptions, x
    raise ValueError(op)


def build_model(case):
    m = s.ModelT()
    m.version = 3
    oc = s.OperatorCodeT()
    oc.builtinCode = OPS[case["op"]]
    oc.deprecatedBuiltinCode = min(OPS[case["op"]], 127)
    oc.version = 1
    m.operatorCodes = [oc]
    m.buffers = [s.BufferT()]
    g = s.SubGraphT()
    g.tensors = []
    all_t = [t for t in case["inputs"]] + [case["output"]]
    idx = []
    for i, t in enumerate(all_t):
        if t is None:
            idx.append(-1)
            continue
        tt = s.TensorT()
        tt.name = f"t{i}"
        tt.type = TT[t["dtype"]]
        tt.shape = t["shape"]
        if "scale" in t:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = t["scale"], t["zero_point"], t["axis"]
            tt.quantization = q
        b = s.BufferT()
        if "data" in t and t.get("const", True):
            b.data = np.asarray(t["data"], NP[t["dtype"]]).tobytes()
        m.buffers.append(b)
        tt.buffer = len(m.buffers) - 1
        idx.append(len(g.tensors))
        g.tensors.append(tt)
    op = s.OperatorT()
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


def run(case):
    model = build_model(case)
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
        return run(case)
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
        run(case)
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
        return run(case)
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
    return run(case)


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
    return run(case)


def mean(name, dtype, in_shape, axes, keep, in_q=(0.05, 3), out_q=(0.02, -5)):
    case = {"name": name, "op": "MEAN", "options": {"keep_dims": keep}}
    axis_t = tensor("int32", [len(axes)], np.array(axes))
    if dtype == "float32":
        case["inputs"] = [tensor("float32", in_shape, RNG.standard_normal(in_shape)), axis_t]
        case["output"] = tensor("float32", [1])
    else:
        case["inputs"] = [tensor(dtype, in_shape, qrand(dtype, in_shape), *in_q), axis_t]
        case["output"] = tensor(dtype, [1], None, *out_q)
    return run(case)


def main():
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
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "data", "ops", "conv_pool_fc_mean.json")
    with open(out, "w") as f:
        json.dump({"generator": "scripts/gen_ops_fixtures.py (ai_edge_litert BUILTIN_REF)",
                   "cases": cases}, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
