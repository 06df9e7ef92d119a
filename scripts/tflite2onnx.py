#!/usr/bin/env python3
"""Convert edgecam's SSD .tflite models to ONNX, so that ONNX Runtime can be benchmarked on the
same network (scripts/bench-peers).

Usage:
  tflite2onnx.py MODEL.tflite OUT.onnx            convert
  tflite2onnx.py MODEL.tflite OUT.onnx --check IMAGE [--steps N] [--rel R]
                                                  convert, then run TFLite (reference kernels) and
                                                  ONNX Runtime on IMAGE and compare the outputs;
                                                  exit status 1 if they differ by more than allowed

The .tflite flatbuffer is read with the schema that ships with ai-edge-litert
(`schema_py_generated`); the ONNX graph is built with the `onnx` package. Only the operators of
the bundled SSD models are mapped (CONV_2D, DEPTHWISE_CONV_2D, ADD, RESHAPE, CONCATENATION,
QUANTIZE, DEQUANTIZE, with fused NONE/RELU/RELU_N1_TO_1/RELU6); anything else is a clear error.

* float32 models (and float16-weight models: DEQUANTIZE of a float16 constant is folded into a
  float32 initializer) become a plain float ONNX graph.
* int8 models become a QDQ graph: every quantized operator is written as DequantizeLinear on its
  int8 inputs, the float operator, and QuantizeLinear on its output, with the TFLite scales and
  zero points (per-channel for the weights, int32 biases dequantized with scale_in*scale_w).
  ONNX Runtime's graph optimizer fuses these groups into its int8 kernels (QLinearConv,
  QLinearAdd, ...), the standard way to hand ORT a quantized model. A fused activation is a
  clamp in the int8 domain after the quantization (exactly as TFLite applies it), written as an
  int8 Clip and omitted when the clamp cannot bind.

Layout: TFLite is NHWC, ONNX Conv is NCHW. The graph keeps the TFLite input and output tensors
(names, shapes, dtypes) unchanged; feature maps are NCHW inside, with a Transpose wherever an
NHWC view is needed (the graph input, before RESHAPE, graph outputs).
"""
import argparse
import os
import sys

import numpy as np
import onnx
from ai_edge_litert import schema_py_generated as S
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
OP_NAMES = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
TT = S.TensorType
NP_OF = {
    TT.FLOAT32: np.float32,
    TT.FLOAT16: np.float16,
    TT.INT8: np.int8,
    TT.UINT8: np.uint8,
    TT.INT32: np.int32,
    TT.INT64: np.int64,
}
ONNX_OF = {
    TT.FLOAT32: TensorProto.FLOAT,
    TT.INT8: TensorProto.INT8,
    TT.UINT8: TensorProto.UINT8,
    TT.INT32: TensorProto.INT32,
    TT.INT64: TensorProto.INT64,
}
TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]


class ConvertError(Exception):
    pass


class Converter:
    def __init__(self, path, act_u8=True):
        self.act_u8 = act_u8
        self.raw = open(path, "rb").read()
        self.model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(self.raw, 0))
        if len(self.model.subgraphs) != 1:
            raise ConvertError(f"{path}: {len(self.model.subgraphs)} subgraphs, only 1 supported")
        self.sg = self.model.subgraphs[0]
        self.nodes = []
        self.inits = {}
        self.names = {}  # (tensor index, layout) -> ONNX value name
        self.layout = {}  # tensor index -> "nchw" | "plain" (layout of its primary ONNX value)
        self.folded = {}  # tensor index -> numpy constant produced by a folded op
        self.counter = 0

    # ------------------------------------------------------------------ helpers
    def uniq(self, stem):
        self.counter += 1
        return f"{stem}__{self.counter}"

    def tensor(self, i):
        return self.sg.tensors[i]

    def const(self, i):
        """The constant data of tensor i as a numpy array in TFLite layout, or None."""
        if i in self.folded:
            return self.folded[i]
        t = self.tensor(i)
        b = self.model.buffers[t.buffer]
        if b.offset is not None and b.offset > 1:
            data = self.raw[b.offset : b.offset + b.size]
        elif b.data is not None and len(b.data):
            data = bytes(bytearray(b.data))
        else:
            return None
        if t.type not in NP_OF:
            raise ConvertError(f"tensor {t.name!r}: unsupported constant type {t.type}")
        shape = [int(d) for d in t.shape] if t.shape is not None else []
        return np.frombuffer(data, NP_OF[t.type]).reshape(shape).copy()

    def quant(self, i):
        """(scale array, zero-point array, axis) of tensor i, or None if not quantized."""
        q = self.tensor(i).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        zp = q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale), np.int64)
        return np.asarray(q.scale, np.float32), np.asarray(zp, np.int64), int(q.quantizedDimension)

    def is_q(self, i):
        return self.tensor(i).type in (TT.INT8, TT.UINT8)

    def init(self, arr, stem):
        name = self.uniq(stem)
        self.inits[name] = numpy_helper.from_array(np.asarray(arr), name)
        return name

    def node(self, op, inputs, stem, **attrs):
        out = self.uniq(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def scalar_qparams(self, i, boundary=False):
        """Per-tensor (scale name, zero-point name, scale, zero point) of activation tensor i in
        its ONNX representation: uint8 inside the graph when act_u8 (int8 value + 128), the TFLite
        type itself at the graph boundary (boundary=True)."""
        scale, zp, _ = self.quant(i)
        if len(scale) != 1:
            raise ConvertError(f"tensor {self.tensor(i).name!r}: per-channel activation quantization")
        zp = int(zp[0])
        if self.tensor(i).type == TT.UINT8:
            zdt = np.uint8
        elif self.act_u8 and not boundary:
            zdt, zp = np.uint8, zp + 128
        else:
            zdt = np.int8
        return (
            self.init(np.float32(scale[0]), "scale"),
            self.init(zdt(zp), "zp"),
            float(scale[0]),
            zp,
        )

    def value(self, i, layout):
        """ONNX value name of tensor i in the wanted layout ("nchw" or "plain")."""
        key = (i, layout)
        if key in self.names:
            return self.names[key]
        have = self.layout.get(i)
        if have is None:
            c = self.const(i)
            if c is None:
                raise ConvertError(f"tensor {self.tensor(i).name!r} used before it is produced")
            if layout == "nchw":
                c = c.transpose(TO_NCHW)
            name = self.init(c, "const")
        else:
            src = self.names[(i, have)]
            perm = TO_NCHW if layout == "nchw" else TO_NHWC
            name = self.node("Transpose", [src], "transpose", perm=perm)
        self.names[key] = name
        return name

    def produce(self, i, name, layout):
        self.names[(i, layout)] = name
        self.layout[i] = layout

    def dq(self, i, layout):
        """Float view of tensor i: DequantizeLinear of its int8 value, or the value itself."""
        v = self.value(i, layout)
        if not self.is_q(i):
            return v
        # One DequantizeLinear per tensor, shared by its consumers: ORT's QDQ transformers (the
        # s8->u8 conversion that enables its x86 int8 kernels) want each Q followed by one DQ.
        key = (i, layout, "dq")
        if key not in self.names:
            s, z, _, _ = self.scalar_qparams(i)
            self.names[key] = self.node("DequantizeLinear", [v, s, z], "dq")
        return self.names[key]

    def finish(self, out_idx, float_value, act, layout):
        """Bind TFLite output tensor out_idx: float activation + (for int8) quantization."""
        if not self.is_q(out_idx):
            lo_hi = {0: None, 1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0)}[act]
            v = float_value
            if lo_hi == (0.0, None):
                v = self.node("Relu", [v], "relu")
            elif lo_hi is not None:
                lo = self.init(np.float32(lo_hi[0]), "min")
                hi = self.init(np.float32(lo_hi[1]), "max")
                v = self.node("Clip", [v, lo, hi], "clip")
            self.produce(out_idx, v, layout)
            return
        s, z, scale, zp = self.scalar_qparams(out_idx)
        v = self.node("QuantizeLinear", [float_value, s, z], "q")
        if self.tensor(out_idx).type == TT.INT8 and not self.act_u8:
            qmin, qmax, dt = -128, 127, np.int8
        else:
            qmin, qmax, dt = 0, 255, np.uint8
        # TFLite's CalculateActivationRangeQuantized: clamp in the quantized domain.
        lo, hi = qmin, qmax
        if act in (1, 2, 3):
            lo = max(qmin, zp + int(round((0.0 if act != 2 else -1.0) / scale)))
        if act in (2, 3):
            hi = min(qmax, zp + int(round((1.0 if act == 2 else 6.0) / scale)))
        if act not in (0, 1, 2, 3):
            raise ConvertError(f"fused activation {act} not supported")
        if lo > qmin or hi < qmax:
            v = self.node("Clip", [v, self.init(dt(lo), "qmin"), self.init(dt(hi), "qmax")], "qclip")
        self.produce(out_idx, v, layout)

    # ------------------------------------------------------------------ operators
    def conv(self, op, depthwise):
        o = op.builtinOptions
        x, w_idx, out = op.inputs[0], op.inputs[1], op.outputs[0]
        b_idx = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        w = self.const(w_idx)
        if w is None:
            raise ConvertError("convolution with non-constant weights")
        in_shape = [int(d) for d in self.tensor(x).shape]
        out_shape = [int(d) for d in self.tensor(out).shape]
        kh, kw = w.shape[1], w.shape[2]
        sh, sw = o.strideH, o.strideW
        dh, dw = o.dilationHFactor, o.dilationWFactor
        pads = [0, 0, 0, 0]
        if o.padding == S.Padding.SAME:
            ph = max((out_shape[1] - 1) * sh + (kh - 1) * dh + 1 - in_shape[1], 0)
            pw = max((out_shape[2] - 1) * sw + (kw - 1) * dw + 1 - in_shape[2], 0)
            pads = [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2]
        if depthwise:
            # [1, KH, KW, C*M] -> [C*M, 1, KH, KW], group = C
            w_onnx = w.transpose(3, 0, 1, 2)
            group = in_shape[3]
            w_axis_tfl = 3
        else:
            # [O, KH, KW, I] -> [O, I, KH, KW]
            w_onnx = w.transpose(0, 3, 1, 2)
            group = 1
            w_axis_tfl = 0
        xin = self.dq(x, "nchw")
        if self.is_q(w_idx):
            scale, zp, axis = self.quant(w_idx)
            if len(scale) > 1 and axis != w_axis_tfl:
                raise ConvertError(f"weights quantized along axis {axis}, expected {w_axis_tfl}")
            wq = self.init(w_onnx, "w")
            dt = np.int8 if self.tensor(w_idx).type == TT.INT8 else np.uint8
            if len(scale) > 1:
                win = self.node(
                    "DequantizeLinear",
                    [wq, self.init(scale, "wscale"), self.init(zp.astype(dt), "wzp")],
                    "dqw",
                    axis=0,
                )
            else:
                win = self.node(
                    "DequantizeLinear",
                    [wq, self.init(np.float32(scale[0]), "wscale"), self.init(dt(zp[0]), "wzp")],
                    "dqw",
                )
        else:
            win = self.init(w_onnx.astype(np.float32), "w")
        inputs = [xin, win]
        if b_idx is not None:
            b = self.const(b_idx)
            if b is None:
                raise ConvertError("convolution with non-constant bias")
            if b.dtype == np.int32:
                bscale, bzp, _ = self.quant(b_idx)
                if np.any(bzp != 0):
                    raise ConvertError("bias with a non-zero zero point")
                if len(bscale) > 1:
                    inputs.append(
                        self.node(
                            "DequantizeLinear",
                            [self.init(b, "b"), self.init(bscale, "bscale"), self.init(np.zeros(len(b), np.int32), "bzp")],
                            "dqb",
                            axis=0,
                        )
                    )
                else:
                    inputs.append(
                        self.node(
                            "DequantizeLinear",
                            [self.init(b, "b"), self.init(np.float32(bscale[0]), "bscale"), self.init(np.int32(0), "bzp")],
                            "dqb",
                        )
                    )
            else:
                inputs.append(self.init(b.astype(np.float32), "b"))
        y = self.node(
            "Conv",
            inputs,
            "conv",
            kernel_shape=[kh, kw],
            strides=[sh, sw],
            dilations=[dh, dw],
            pads=pads,
            group=group,
        )
        self.finish(out, y, o.fusedActivationFunction, "nchw")

    def add(self, op):
        a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
        layout = "nchw" if self.layout.get(a) == "nchw" and self.layout.get(b) == "nchw" else "plain"
        y = self.node("Add", [self.dq(a, layout), self.dq(b, layout)], "add")
        self.finish(out, y, op.builtinOptions.fusedActivationFunction, layout)

    def reshape(self, op):
        x, out = op.inputs[0], op.outputs[0]
        shape = [int(d) for d in self.tensor(out).shape]
        if self.is_q(x) and not self.same_q(x, out):
            raise ConvertError("RESHAPE changes quantization parameters")
        y = self.node("Reshape", [self.value(x, "plain"), self.init(np.array(shape, np.int64), "shape")], "reshape")
        self.produce(out, y, "plain")

    def same_q(self, a, b):
        qa, qb = self.quant(a), self.quant(b)
        if qa is None or qb is None:
            return qa is None and qb is None
        return np.array_equal(qa[0], qb[0]) and np.array_equal(qa[1], qb[1])

    def concat(self, op):
        o = op.builtinOptions
        ins, out = [i for i in op.inputs], op.outputs[0]
        rank = len(self.tensor(out).shape)
        axis = o.axis % rank
        layout = "nchw" if rank == 4 and all(self.layout.get(i) == "nchw" for i in ins) else "plain"
        onnx_axis = TO_NHWC[axis] if layout == "nchw" else axis
        act = o.fusedActivationFunction
        if self.is_q(out) and act == 0 and all(self.same_q(i, out) for i in ins):
            # same scale everywhere: a plain int8 concatenation, as TFLite does it
            y = self.node("Concat", [self.value(i, layout) for i in ins], "concat", axis=onnx_axis)
            self.produce(out, y, layout)
            return
        y = self.node("Concat", [self.dq(i, layout) for i in ins], "concat", axis=onnx_axis)
        self.finish(out, y, act, layout)

    def quantize(self, op):
        x, out = op.inputs[0], op.outputs[0]
        layout = self.layout.get(x, "plain")
        self.finish(out, self.dq(x, layout), 0, layout)

    def dequantize(self, op):
        x, out = op.inputs[0], op.outputs[0]
        c = self.const(x)
        if c is not None and c.dtype == np.float16:
            self.folded[out] = c.astype(np.float32)
            return
        layout = self.layout.get(x, "plain")
        self.produce(out, self.dq(x, layout), layout)

    # ------------------------------------------------------------------ graph
    def convert(self):
        sg = self.sg
        for i in sg.inputs:
            v = self.io_name(i)
            if self.act_u8 and self.tensor(i).type == TT.INT8:
                s8, z8, _, _ = self.scalar_qparams(i, boundary=True)
                su, zu, _, _ = self.scalar_qparams(i)
                v = self.node("QuantizeLinear", [self.node("DequantizeLinear", [v, s8, z8], "dq_in"), su, zu], "q_u8")
            self.produce(i, v, "plain")
        for n, op in enumerate(sg.operators):
            code = self.model.operatorCodes[op.opcodeIndex]
            name = OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
            try:
                if name == "CONV_2D":
                    self.conv(op, False)
                elif name == "DEPTHWISE_CONV_2D":
                    self.conv(op, True)
                elif name == "ADD":
                    self.add(op)
                elif name == "RESHAPE":
                    self.reshape(op)
                elif name == "CONCATENATION":
                    self.concat(op)
                elif name == "QUANTIZE":
                    self.quantize(op)
                elif name == "DEQUANTIZE":
                    self.dequantize(op)
                else:
                    raise ConvertError(f"operator {name} is not supported by this converter")
            except ConvertError as e:
                raise ConvertError(f"operator #{n} {name}: {e}") from None
        outputs = []
        for i in sg.outputs:
            v = self.value(i, "plain")
            if self.act_u8 and self.tensor(i).type == TT.INT8:
                s8, z8, _, _ = self.scalar_qparams(i, boundary=True)
                su, zu, _, _ = self.scalar_qparams(i)
                v = self.node("QuantizeLinear", [self.node("DequantizeLinear", [v, su, zu], "dq_u8"), s8, z8], "q_out")
            self.nodes.append(helper.make_node("Identity", [v], [self.io_name(i)], name="out_" + self.io_name(i)))
            outputs.append(self.vinfo(i))
        graph = helper.make_graph(
            self.nodes,
            "edgecam_tflite2onnx",
            [self.vinfo(i) for i in sg.inputs],
            outputs,
            initializer=list(self.inits.values()),
        )
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="edgecam scripts/tflite2onnx.py",
        )
        m.ir_version = 10
        onnx.checker.check_model(m, full_check=True)
        return m

    def io_name(self, i):
        return self.tensor(i).name.decode()

    def vinfo(self, i):
        t = self.tensor(i)
        if t.type not in ONNX_OF:
            raise ConvertError(f"graph input/output {t.name!r} has unsupported type {t.type}")
        return helper.make_tensor_value_info(self.io_name(i), ONNX_OF[t.type], [int(d) for d in t.shape])


def convert(tflite_path, onnx_path, act_u8=True):
    m = Converter(tflite_path, act_u8).convert()
    onnx.save(m, onnx_path)
    return m


# ---------------------------------------------------------------------- check
def load_input(image, detail):
    """IMAGE resized to the model input, RGB in [-1, 1], quantized for an int8 input."""
    from PIL import Image

    _, h, w, _ = detail["shape"]
    img = Image.open(image).convert("RGB").resize((int(w), int(h)), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 127.5 - 1.0)[None]
    if detail["dtype"] == np.float32:
        return x
    scale, zp = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(detail["dtype"])


def ort_session(onnx_path, optimize, optimized_path=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])


def compare(label, ref_details, refs, sess, x, rel, max_steps, max_mean):
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    ok = True
    for od, ref in zip(ref_details, refs):
        out = got[od["name"]]
        if out.shape != ref.shape or out.dtype != ref.dtype:
            print(f"FAIL {label} {od['name']}: ONNX {out.dtype}{out.shape} vs TFLite {ref.dtype}{ref.shape}")
            ok = False
            continue
        if ref.dtype == np.float32:
            err = float(np.max(np.abs(out - ref)))
            lim = rel * float(np.max(np.abs(ref)))
            good = err <= lim
            print(f"{'ok  ' if good else 'FAIL'} {label} {od['name']}: max |onnx - tflite| = {err:.3g} "
                  f"(limit {rel:g} x max|tflite| = {lim:.3g})")
        else:
            d = np.abs(out.astype(np.int32) - ref.astype(np.int32))
            good = int(d.max()) <= max_steps and float(d.mean()) <= max_mean
            print(f"{'ok  ' if good else 'FAIL'} {label} {od['name']}: max {int(d.max())} quantization steps, "
                  f"mean {d.mean():.3f} (limits {max_steps}, {max_mean}); {np.mean(d == 0) * 100:.1f} % equal, "
                  f"{np.mean(d <= 1) * 100:.1f} % within 1 step")
        ok &= good
    return ok


def check(tflite_path, onnx_path, image, a):
    """Run TFLite's reference kernels and ONNX Runtime on IMAGE and compare (see --help)."""
    import tempfile

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=tflite_path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    (ind,) = it.get_input_details()
    x = load_input(image, ind)
    it.set_tensor(ind["index"], x)
    it.invoke()
    details = it.get_output_details()
    refs = [it.get_tensor(od["index"]) for od in details]
    if details[0]["dtype"] == np.float32:
        return compare("ORT", details, refs, ort_session(onnx_path, True), x, a.rel, 0, 0)
    # int8: (1) the QDQ graph as written, evaluated op by op (no fusion): checks the conversion
    # itself, which should be as close to TFLite's reference kernels as TFLite's own XNNPACK
    # kernels are (both requantize in float, TFLite's reference in fixed point);
    ok = compare("ORT unfused", details, refs, ort_session(onnx_path, False), x, 0, a.steps, a.mean)
    # (2) what the benchmark runs: ORT's optimized graph, which must use int8 kernels for every
    # convolution and addition. On AVX2 CPUs without VNNI, ORT's u8s8 kernels saturate int16
    # intermediate sums (VPMADDUBSW), so their results are further from TFLite; looser limits.
    with tempfile.TemporaryDirectory() as tmp:
        opt_path = os.path.join(tmp, "optimized.onnx")
        sess = ort_session(onnx_path, True, opt_path)
        ops = {}
        for n in onnx.load(opt_path).graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    n_qconv, n_qadd = ops.get("QLinearConv", 0), ops.get("QLinearAdd", 0)
    fused = ops.get("Conv", 0) == 0 and ops.get("Add", 0) == 0 and n_qconv > 0
    print(f"{'ok  ' if fused else 'FAIL'} ORT optimized graph: {n_qconv} QLinearConv, {n_qadd} QLinearAdd, "
          f"{ops.get('Conv', 0)} float Conv, {ops.get('Add', 0)} float Add")
    ok &= fused
    ok &= compare("ORT optimized", details, refs, sess, x, 0, a.opt_steps, a.opt_mean)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tflite")
    ap.add_argument("onnx")
    ap.add_argument("--check", metavar="IMAGE", help="compare ONNX Runtime with TFLite on IMAGE")
    ap.add_argument("--rel", type=float, default=1e-4, help="float: max |diff| / max |tflite| per output")
    ap.add_argument("--steps", type=int, default=6, help="int8, unfused graph: max difference in quantization steps")
    ap.add_argument("--mean", type=float, default=0.75, help="int8, unfused graph: max mean difference in steps")
    ap.add_argument("--opt-steps", type=int, default=32, help="int8, ORT-optimized graph: max difference in steps")
    ap.add_argument("--opt-mean", type=float, default=3.0, help="int8, ORT-optimized graph: max mean difference")
    ap.add_argument("--s8-activations", action="store_true",
                    help="keep int8 activations inside the graph (default: uint8 = int8 + 128, exactly the same "
                         "values, the activation type ONNX Runtime's x86 int8 kernels use)")
    a = ap.parse_args()
    try:
        m = convert(a.tflite, a.onnx, act_u8=not a.s8_activations)
    except ConvertError as e:
        print(f"tflite2onnx: {a.tflite}: {e}", file=sys.stderr)
        return 2
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"{a.tflite} -> {a.onnx}: {len(m.graph.node)} nodes ({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))})")
    if a.check:
        return 0 if check(a.tflite, a.onnx, a.check, a) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
