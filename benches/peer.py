#!/usr/bin/env python3
"""Peer harness: tern vs tract vs ONNX Runtime on the sample models, same input, same thread count, one run
of this script. Each engine runs in its own process, so peak RSS is per engine.

    python3 benches/peer.py [--runs 20] [--threads 1 2] [--models digits cls det320 det736]

Needs release binaries (`cargo build --release -p tern-tools -p tern-benches`, done here if missing) and
`bash models/fetch.sh`. ONNX Runtime comes from pip (`onnxruntime`); if it cannot be imported or installed
the ORT columns say why. Prints a markdown table for benches/README.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
def target_dir():
    """Cargo's target directory (honours CARGO_TARGET_DIR and cargo config)."""
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["target_directory"]

MODELS = {
    "digits": ("models/digits/digits.onnx", "input", [1, 64]),
    "cls": ("models/cache/ch_ppocr_mobile_v2.0_cls_infer.onnx", "x", [1, 3, 48, 192]),
    "det320": ("models/cache/ch_PP-OCRv4_det_infer.onnx", "x", [1, 3, 320, 320]),
    "det736": ("models/cache/ch_PP-OCRv4_det_infer.onnx", "x", [1, 3, 736, 736]),
}


def seeded(n, seed):
    """The same LCG as tern_tools::cli::bench::seeded, so every engine sees identical inputs."""
    import numpy as np

    m = (1 << 64) - 1
    a, c = 6364136223846793005, 1442695040888963407
    s = (seed * a + c) & m
    out = np.empty(n, np.float32)
    for i in range(n):
        s = (s * a + c) & m
        out[i] = ((s >> 40) / float(1 << 24)) * 2.0 - 1.0
    return out


def ort_worker(path, shape, threads, runs, warmup):
    import time

    import numpy as np
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    x = seeded(int(np.prod(shape)), 0).reshape(shape)
    feed = {s.get_inputs()[0].name: x}
    for _ in range(warmup):
        s.run(None, feed)
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, feed)
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"engine": "ort", "median_ms": ms[len(ms) // 2], "min_ms": ms[0], "runs": runs, "threads": threads,
                      "peak_rss_bytes": rss, "version": ort.__version__}))


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def ensure_ort():
    try:
        import onnxruntime  # noqa: F401

        return None
    except ImportError:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "onnxruntime"], capture_output=True, text=True)
        if r.returncode != 0:
            return "onnxruntime not installable: " + r.stderr.strip().splitlines()[-1]
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=["digits", "cls", "det320", "det736"])
    ap.add_argument("--ort-worker", nargs=4, metavar=("MODEL", "SHAPE", "THREADS", "RUNS"))
    a = ap.parse_args()
    if a.ort_worker:
        p, shape, t, runs = a.ort_worker
        ort_worker(p, [int(d) for d in shape.split("x")], int(t), int(runs), a.warmup)
        return
    target = target_dir()
    tern = os.path.join(target, "release", "tern")
    tract = os.path.join(target, "release", "tract-bench")
    if not (os.path.exists(tern) and os.path.exists(tract)):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "tern-tools", "-p", "tern-benches"], cwd=ROOT, check=True)
    ort_missing = ensure_ort()
    rows = []
    tmp = tempfile.mkdtemp(prefix="tern-peer-")
    for name in a.models:
        rel, inp, shape = MODELS[name]
        onnx = os.path.join(ROOT, rel)
        if not os.path.exists(onnx):
            print(f"skipping {name}: {rel} missing (bash models/fetch.sh)", file=sys.stderr)
            continue
        dims = "x".join(map(str, shape))
        art = os.path.join(tmp, name + ".tern")
        subprocess.run([tern, "-q", "compress", onnx, "-o", art, "--input-shape", f"{inp}={dims}"], check=True)
        for t in a.threads:
            tr = run_json([tern, "bench", art, "--threads", str(t), "--runs", str(a.runs), "--warmup", str(a.warmup), "--json"])
            # tract is measured single-threaded (its default executor); its column repeats for t > 1
            tc = run_json([tract, onnx, dims, str(a.runs), str(a.warmup)])
            if ort_missing:
                oc = {"error": ort_missing}
            else:
                try:
                    oc = run_json([sys.executable, __file__, "--warmup", str(a.warmup), "--ort-worker", onnx, dims, str(t), str(a.runs)])
                except RuntimeError as e:
                    oc = {"error": str(e)}
            rows.append((name, dims, t, tr, tc, oc, os.path.getsize(art), os.path.getsize(onnx)))
            print(f"{name} t={t}: tern {tr['median_ms']:.3f} ms, tract {tc['median_ms']:.3f} ms, ort {oc.get('median_ms', oc.get('error'))}", file=sys.stderr)
    cpu = ""
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        pass
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, {cpu}; runs={a.runs}, warmup={a.warmup}; median ms.\n")
    print("| model | input | threads | tern f32 ms | tract f32 ms (1t) | ORT f32 ms | tern/tract | tern/ORT | tern RSS MB | tract RSS MB | ORT RSS MB | .tern / .onnx bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, dims, t, tr, tc, oc, asz, osz in rows:
        om = oc.get("median_ms")
        tern_ms, tract_ms = tr["median_ms"], tc["median_ms"]
        ort_ms = "%.3f" % om if om else "n/a"
        vs_ort = "%.2f" % (tern_ms / om) if om else "n/a"
        ort_rss = "%.1f" % (oc["peak_rss_bytes"] / 1e6) if om else "n/a"
        print(
            f"| {name} | {dims} | {t} | {tern_ms:.3f} | {tract_ms:.3f} | {ort_ms} | {tern_ms / tract_ms:.2f} | {vs_ort} | "
            f"{tr['peak_rss_bytes'] / 1e6:.1f} | {tc['peak_rss_bytes'] / 1e6:.1f} | {ort_rss} | {asz} / {osz} |"
        )
    if ort_missing:
        print(f"\nORT: {ort_missing}")


if __name__ == "__main__":
    main()
