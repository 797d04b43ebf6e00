#!/usr/bin/env bash
# Fetches the real PP-OCR models tern is tested and benchmarked on, from the rapidocr-onnxruntime 1.4.4
# wheel on PyPI (Apache-2.0; originally PaddleOCR), into models/cache/ (git-ignored).
#   bash models/fetch.sh
# Idempotent and checksummed: files already present with the right sha256 are kept; nothing half-written
# is ever left in models/cache/ (extract to a temp file, verify, then rename).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/cache"
wheel_spec="rapidocr-onnxruntime==1.4.4"
declare -A SHA=(
  [ch_ppocr_mobile_v2.0_cls_infer.onnx]=e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c
  [ch_PP-OCRv4_det_infer.onnx]=d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9
)
ok() { [ -f "$cache/$1" ] && [ "$(sha256sum "$cache/$1" | cut -d' ' -f1)" = "${SHA[$1]}" ]; }
missing=()
for f in "${!SHA[@]}"; do ok "$f" || missing+=("$f"); done
[ ${#missing[@]} -eq 0 ] && exit 0
mkdir -p "$cache"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "fetch.sh: downloading $wheel_spec for ${missing[*]}" >&2
python3 -m pip download -q --no-deps "$wheel_spec" -d "$tmp" >&2
python3 - "$tmp" "$cache" "${missing[@]}" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, cache, names = sys.argv[1], sys.argv[2], sys.argv[3:]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for name in names:
        member = "rapidocr_onnxruntime/models/" + name
        part = os.path.join(cache, "." + name + ".part")
        with z.open(member) as src, open(part, "wb") as dst:
            dst.write(src.read())
        os.replace(part, os.path.join(cache, name + ".unverified"))
PY
for f in "${missing[@]}"; do
  got="$(sha256sum "$cache/$f.unverified" | cut -d' ' -f1)"
  if [ "$got" != "${SHA[$f]}" ]; then
    rm -f "$cache/$f.unverified"
    echo "fetch.sh: checksum mismatch for $f: got $got, expected ${SHA[$f]}" >&2
    exit 1
  fi
  mv "$cache/$f.unverified" "$cache/$f"
  echo "fetch.sh: $cache/$f ok" >&2
done
