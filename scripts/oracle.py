#!/usr/bin/env python3
"""Reference oracle: run .tflite models in TFLite's *reference* kernels.

Usage: oracle.py CASES_DIR

Every sub-directory of CASES_DIR that holds `model.tflite` and `in_<k>.npy`
files is run once with ai-edge-litert's BUILTIN_REF op resolver (TFLite's
portable reference kernels); each output k is written as `ref_<k>.npy`.
`EDGECAM_ORACLE_RESOLVER=BUILTIN` runs TFLite's optimized builtin kernels instead
(without XNNPACK), to measure how far they are from the reference themselves.
A case the interpreter rejects gets `ref_error.txt` with the message instead,
so one bad case never hides the others. Used by the differential tests.
"""
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def run_case(d):
    it = Interpreter(
        model_path=os.path.join(d, "model.tflite"),
        experimental_op_resolver_type=getattr(
            OpResolverType, os.environ.get("EDGECAM_ORACLE_RESOLVER", "BUILTIN_REF")
        ),
    )
    it.allocate_tensors()
    for k, det in enumerate(it.get_input_details()):
        x = np.load(os.path.join(d, f"in_{k}.npy"))
        it.set_tensor(det["index"], x)
    it.invoke()
    for k, det in enumerate(it.get_output_details()):
        np.save(os.path.join(d, f"ref_{k}.npy"), it.get_tensor(det["index"]))


def main():
    root = sys.argv[1]
    n_ok = n_err = 0
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "model.tflite")):
            continue
        try:
            run_case(d)
            n_ok += 1
        except Exception as e:  # reported per case, checked by the Rust side
            with open(os.path.join(d, "ref_error.txt"), "w") as f:
                f.write(f"{type(e).__name__}: {e}\n")
            n_err += 1
    print(f"oracle: {n_ok} cases run, {n_err} rejected", file=sys.stderr)


if __name__ == "__main__":
    main()
