#!/usr/bin/env python3
"""Time edgecam against its peers on the same machine, thread count and fixed input, interleaved.

Called by scripts/bench-peers (which builds edgecam and the ONNX models first); see that script
for usage. Engines, for each thread count N:

  edgecam int8 / fp32   `edgecam bench --model M --threads N --json --serve`: one process per
                        engine for all rounds, the model loaded once (like the peers'
                        interpreters), a round per request; the engine's own timer around
                        each invoke
  tflite int8 / fp32    ai-edge-litert Interpreter(num_threads=N), default op resolver (AUTO:
                        the XNNPACK delegate), timed around invoke()
  ort int8 / fp32       ONNX Runtime CPU provider on scripts/tflite2onnx.py's conversion,
                        intra_op_num_threads=N, inter_op 1, all graph optimizations, I/O bound
                        once (IOBinding), timed around run_with_iobinding()

Every round runs each engine in turn (at least W warm-up invocations over at least --warmup-ms,
then K timed invocations) with a short pause in
between so that no thread pool is still spinning when the next engine starts; the order rotates
from round to round. Per round an engine yields the median and p95 of its K times; the table
shows, per engine, the median over the rounds of those round medians and round p95s.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

PAUSE_S = 0.3


def fixed_input(shape, dtype):
    """The input `edgecam bench` uses: bytes k*7 % 251, and for float32 (k*7 % 255)/127.5 - 1."""
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.int64)
    if dtype == np.float32:
        return (((k * 7) % 255).astype(np.float32) / np.float32(127.5) - np.float32(1.0)).reshape(shape)
    # Other types: the bytes k*7 % 251 viewed as the type (edgecam bench fills the bytes).
    size = np.dtype(dtype).itemsize
    k = np.arange(n * size, dtype=np.int64)
    return ((k * 7) % 251).astype(np.uint8).view(dtype).reshape(shape)


def stats(ms):
    s = sorted(ms)
    return s[len(s) // 2], s[int(round((len(s) - 1) * 0.95))]


def warm_up(invoke, count, ms):
    """At least `count` invocations over at least `ms` milliseconds (as `edgecam bench`)."""
    t0, n = time.perf_counter(), 0
    while n < count or (time.perf_counter() - t0) * 1000.0 < ms:
        invoke()
        n += 1


class Edgecam:
    kind = "edgecam"

    def __init__(self, binary, model, threads):
        self.binary, self.model, self.threads = binary, model, threads
        self.kernels = None
        # One process for all rounds, the model loaded once, as the peers' interpreters
        # are: `edgecam bench --serve` times one round per line `ITERATIONS WARMUP`.
        cmd = [binary, "bench", "--model", model, "--threads", str(threads), "--json", "--serve"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def round(self, iterations, warmup, warmup_ms):
        p = self.proc
        line = ""
        if p.poll() is None:
            p.stdin.write(f"{iterations} {warmup} {warmup_ms}\n")
            p.stdin.flush()
            while not line.startswith("{"):
                line = p.stdout.readline()
                if not line:
                    break
        if not line.startswith("{"):
            p.kill()
            err = p.stderr.read().strip().splitlines()
            raise RuntimeError((err or [f"exit status {p.wait()}"])[-1])
        r = json.loads(line)
        self.kernels = r.get("kernels")
        if int(r.get("threads", self.threads)) != self.threads:
            raise RuntimeError(f"edgecam ran {r.get('threads')} threads, not {self.threads}")
        return float(r["median_ms"]), float(r["p95_ms"])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


class TFLite:
    kind = "tflite"

    def __init__(self, model, threads):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=model, num_threads=threads)
        self.it.allocate_tensors()
        for d in self.it.get_input_details():
            self.it.set_tensor(d["index"], fixed_input(d["shape"], d["dtype"]))

    def round(self, iterations, warmup, warmup_ms):
        warm_up(self.it.invoke, warmup, warmup_ms)
        ms = []
        for _ in range(iterations):
            t = time.perf_counter()
            self.it.invoke()
            ms.append((time.perf_counter() - t) * 1000.0)
        return stats(ms)


class Ort:
    kind = "ort"
    NP = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}

    def __init__(self, model, threads):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        self.io = self.sess.io_binding()
        self.inputs = []
        for i in self.sess.get_inputs():
            x = fixed_input(i.shape, self.NP[i.type])
            self.inputs.append(x)  # keep alive: bound by pointer
            self.io.bind_cpu_input(i.name, x)
        for o in self.sess.get_outputs():
            self.io.bind_output(o.name, "cpu")

    def round(self, iterations, warmup, warmup_ms):
        warm_up(lambda: self.sess.run_with_iobinding(self.io), warmup, warmup_ms)
        ms = []
        for _ in range(iterations):
            t = time.perf_counter()
            self.sess.run_with_iobinding(self.io)
            ms.append((time.perf_counter() - t) * 1000.0)
        return stats(ms)


def machine():
    cpu = "unknown"
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if x in flags)
    versions = {}
    for mod in ("ai_edge_litert", "onnxruntime"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception:
            versions[mod] = "?"
    return {
        "cpu": cpu,
        "isa": isa,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_start": os.getloadavg()[0],
        "ai_edge_litert": versions["ai_edge_litert"],
        "onnxruntime": versions["onnxruntime"],
    }


def git_rev(repo):
    try:
        r = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        d = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
        return r.stdout.strip() + ("+dirty" if d.stdout.strip() else "")
    except OSError:
        return "?"


def fmt(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edgecam", required=True, help="edgecam binary (release build)")
    ap.add_argument("--int8", required=True, help="int8 SSD .tflite")
    ap.add_argument("--fp32", required=True, help="float32 SSD .tflite")
    ap.add_argument("--onnx-int8", required=True)
    ap.add_argument("--onnx-fp32", required=True)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=10, help="timed invocations per engine per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed invocations per engine per round, at least")
    ap.add_argument("--warmup-ms", type=int, default=300,
                    help="untimed invocations per engine per round for at least this long (the core's "
                         "clock and the scheduler's thread placement settle after an idle pause)")
    ap.add_argument("--engines", default="edgecam,tflite,ort", help="subset of edgecam,tflite,ort")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=MODEL",
                    help="another quantization of the SSD (e.g. dynamic=..., int16=...), timed for edgecam "
                         "and TFLite (no ONNX conversion)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the Markdown report to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results to FILE")
    ap.add_argument("--repo", default=".", help="repository (for the git revision in the report)")
    a = ap.parse_args()
    threads_list = [int(t) for t in a.threads.split(",") if t.strip()]
    engines_on = set(a.engines.split(","))
    if a.rounds < 1 or a.iterations < 1 or a.warmup < 0 or a.warmup_ms < 0 or not threads_list or min(threads_list) < 1:
        raise SystemExit("bench-peers: --rounds and --iterations must be >= 1, --warmup and --warmup-ms >= 0, "
                         "threads >= 1")
    info = machine()
    info["edgecam_rev"] = git_rev(a.repo)
    print(f"machine: {info['cpu']} ({info['isa']}), {info['usable_cpus']} usable of {info['logical_cpus']} "
          f"logical CPUs, Linux {info['kernel']}, load average {info['loadavg_start']:.2f}")
    print(f"date: {info['date']}; edgecam {info['edgecam_rev']}, ai-edge-litert {info['ai_edge_litert']}, "
          f"onnxruntime {info['onnxruntime']}")
    print(f"rounds {a.rounds} x (warm-up {a.warmup} and {a.warmup_ms} ms + {a.iterations} timed) per engine and "
          "thread count, interleaved")

    results = {}  # (threads, engine, precision) -> {"median", "p95", "rounds": [...], "error"}
    extra = dict(e.split("=", 1) for e in a.extra)
    a.precisions = ["int8", "fp32"] + list(extra)
    for n in threads_list:
        engines = []
        for prec in a.precisions:
            tfl = {"int8": a.int8, "fp32": a.fp32}.get(prec) or extra[prec]
            onx = {"int8": a.onnx_int8, "fp32": a.onnx_fp32}.get(prec)
            specs = [("edgecam", lambda t=tfl: Edgecam(a.edgecam, t, n)),
                     ("tflite", lambda t=tfl: TFLite(t, n))]
            if onx:
                specs.append(("ort", lambda o=onx: Ort(o, n)))
            for kind, make in specs:
                if kind not in engines_on:
                    continue
                key = (n, kind, prec)
                results[key] = {"rounds": [], "error": None}
                try:
                    engines.append((key, make()))
                except Exception as e:  # a peer that cannot load is reported, not fatal
                    results[key]["error"] = f"{type(e).__name__}: {e}"
        print(f"\nthreads {n}:")
        for r in range(a.rounds):
            shift = r % max(len(engines), 1)
            for key, eng in engines[shift:] + engines[:shift]:
                res = results[key]
                if res["error"]:
                    continue
                try:
                    med, p95 = eng.round(a.iterations, a.warmup, a.warmup_ms)
                except Exception as e:
                    res["error"] = str(e).removeprefix("edgecam: error: ")
                    print(f"  {key[1]:8} {key[2]} : {e}")
                    continue
                res["rounds"].append((med, p95))
                if isinstance(eng, Edgecam):
                    res["kernels"] = eng.kernels
                print(f"  round {r + 1}/{a.rounds} {key[1]:8} {key[2]}: median {med:8.2f} ms  p95 {p95:8.2f} ms",
                      flush=True)
                time.sleep(PAUSE_S)
        for _, eng in engines:
            if isinstance(eng, Edgecam):
                eng.close()
        for key, _ in engines:
            res = results[key]
            if res["rounds"]:
                res["median"] = statistics.median(m for m, _ in res["rounds"])
                res["p95"] = statistics.median(p for _, p in res["rounds"])
        del engines
    info["loadavg_end"] = os.getloadavg()[0]

    report = render(results, threads_list, info, a)
    print("\n" + report)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(report)
        print(f"(written to {a.markdown})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "results": [
                {"threads": k[0], "engine": k[1], "precision": k[2], **v} for k, v in results.items()]}, f, indent=1)
    return 0


NAMES = {"edgecam": "edgecam", "tflite": "TFLite + XNNPACK", "ort": "ONNX Runtime"}


def render(results, threads_list, info, a):
    def med(n, e, p):
        r = results.get((n, e, p))
        return None if r is None else r.get("median")

    lines = [
        f"Machine: {info['cpu']} ({info['isa']}), {info['usable_cpus']} usable logical CPUs, "
        f"Linux {info['kernel']}; load average {info['loadavg_start']:.2f} at the start, "
        f"{info['loadavg_end']:.2f} at the end.  ",
        f"Date: {info['date']}. edgecam {info['edgecam_rev']}, ai-edge-litert {info['ai_edge_litert']}, "
        f"onnxruntime {info['onnxruntime']}.  ",
        f"Method: {a.rounds} interleaved rounds, each engine (loaded once) at least {a.warmup} warm-up "
        f"inferences over at least {a.warmup_ms} ms, then {a.iterations} timed inferences per round; median and p95 are the medians over the rounds of the per-round values, in ms.",
        "",
    ]
    head = "| engine | model |"
    rule = "|---|---|"
    for n in threads_list:
        t = f"{n} thread{'s' if n > 1 else ''}"
        head += f" {t}: median | p95 | edgecam ÷ engine |"
        rule += "---:|---:|---:|"
    scale = len(threads_list) > 1
    if scale:
        head += f" speed-up {threads_list[0]}→{threads_list[-1]} threads |"
        rule += "---:|"
    lines += [head, rule]
    notes = []
    for prec in a.precisions:
        for e in ("edgecam", "tflite", "ort"):
            if not any((n, e, prec) in results for n in threads_list):
                continue
            name = NAMES[e]
            kern = [results[(n, e, prec)].get("kernels") for n in threads_list if (n, e, prec) in results]
            kern = next((k for k in kern if k), None)
            row = f"| {name}{f' ({kern} kernels)' if kern else ''} | {prec} |"
            for n in threads_list:
                r = results.get((n, e, prec), {})
                if r.get("median") is None:
                    err = r.get("error") or "not run"
                    notes.append(f"{name} {prec}, {n} thread(s), not measured: {err}")
                    row += f" n/a ({len(notes)}) | | |"
                    continue
                ours = med(n, "edgecam", prec)
                ratio = "—" if e == "edgecam" else (fmt(ours / r["median"]) + "×" if ours else "n/a")
                row += f" {fmt(r['median'])} | {fmt(r['p95'])} | {ratio} |"
            if scale:
                m1, m2 = med(threads_list[0], e, prec), med(threads_list[-1], e, prec)
                row += f" {fmt(m1 / m2)}× |" if m1 and m2 else " n/a |"
            lines.append(row)
    if notes:
        lines.append("")
        lines += [f"({i + 1}) {t}" for i, t in enumerate(notes)]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
