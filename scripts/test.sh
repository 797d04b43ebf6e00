#!/usr/bin/env bash
# Runs every tern test on a fresh Debian 12 x86-64 machine: installs what the tests need (apt packages,
# rustup targets, pip packages), makes the model inputs, then runs the lanes:
#   fmt + clippy + rustdoc, host tests (incl. ONNX node conformance, end-to-end vs tract), no_std thumbv7em build
#   (and the C ABI in Cortex-M4 firmware on qemu-system-arm), the runtime on its declared minimum Rust,
#   aarch64 runtime tests under qemu as Pi 4 (cortex-a72, no dotprod) and Pi 5 (cortex-a76, dotprod),
#   the C ABI from C programs (host, and aarch64 under qemu).
# The target directory lives outside the clone (CARGO_TARGET_DIR, default ~/.cache/tern-target) so repeated
# runs on one machine are warm.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"
export TERN_ONNX_NODE_DIR="${TERN_ONNX_NODE_DIR:-$HOME/.cache/tern-onnx-node}"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "setup: apt packages (lavapipe, cross gcc, qemu-user, fonts), rustup targets"
bash scripts/lanes.sh install
eval "$(bash scripts/lanes.sh env)"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "setup: python packages"
py_missing=()
for spec in "onnx==1.23.2:onnx" "numpy:numpy" "scikit-learn:sklearn" "skl2onnx:skl2onnx" "onnxruntime:onnxruntime" "scikit-image:skimage" "pillow:PIL"; do
  python3 -c "import ${spec#*:}" 2>/dev/null || py_missing+=("${spec%%:*}")
done
[ ${#py_missing[@]} -eq 0 ] || python3 -m pip install -q "${py_missing[@]}"

step "models and data"
bash models/fetch.sh
python3 models/data/make_data.py >/dev/null
python3 tests/conformance/gen_cases.py "$TERN_ONNX_NODE_DIR"

step "fmt + clippy + rustdoc"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q  # rustdoc links resolve (public docs)

step "host tests"
export TERN_GPU_REQUIRED=1  # GPU tests run on lavapipe here and must not skip
cargo test --workspace -q 2>&1 | grep -vE '^\s*$' | tail -n 60
cargo test -p tern-tests --test conformance -q -- --nocapture 2>&1 | grep "ONNX node conformance"
TERN_CPU=scalar cargo test -p tern -q
TERN_CPU=avx2 cargo test -p tern --test host_artifact -q  # the AVX2 path on an AVX-VNNI host
TERN_CPU=avx2 cargo test -p tern-tests --test conv_grid -q  # its wide-weight int8 conv on every shape
# (the PicoDet layout and det320 int16 tests are left out here: on the scalar path their calibration alone
# takes minutes, and the scalar kernels meet real models in the other e2e tests and the host digests)
TERN_CPU=scalar cargo test -p tern-tests --test conv_grid --test e2e -q -- --skip picodet_layout --skip pp_ocr_det_int16

step "no_std: thumbv7em-none-eabihf"
cargo build -p tern --no-default-features --target thumbv7em-none-eabihf -q
cargo build -p tern --no-default-features --features ffi --target thumbv7em-none-eabihf -q  # the C ABI too
# and clippy, warnings as errors: code only the vector paths use must not linger unused there
cargo clippy -p tern --no-default-features --target thumbv7em-none-eabihf -q -- -D warnings
cargo clippy -p tern --no-default-features --features c-alloc --target thumbv7em-none-eabihf -q -- -D warnings  # the C ABI and its C-library glue

step "the runtime's declared minimum Rust (runtime/Cargo.toml rust-version): host, aarch64 and no_std"
# firmware users pin toolchains: the claim must hold, so it is built with exactly that toolchain
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' runtime/Cargo.toml)
# (idempotent: adds the targets to a toolchain installed without them)
rustup toolchain install "$msrv" --profile minimal --target aarch64-unknown-linux-gnu,thumbv7em-none-eabihf
# (--locked: the committed lock file as it is, never re-resolved by the older cargo)
cargo "+$msrv" check --locked -p tern --all-targets --features ffi -q
cargo "+$msrv" check --locked -p tern --all-targets --target aarch64-unknown-linux-gnu -q
cargo "+$msrv" check --locked -p tern --no-default-features --features c-alloc --target thumbv7em-none-eabihf -q

step "firmware: the C ABI linked into a Cortex-M4 image (newlib), run on qemu-system-arm"
bash scripts/firmware.sh

step "aarch64 under qemu: cortex-a72 (Pi 4) and cortex-a76 (Pi 5)"
cargo clippy -p tern --target aarch64-unknown-linux-gnu --all-targets -q -- -D warnings  # the NEON code too
QEMU_CPU=cortex-a72 cargo test -p tern --target aarch64-unknown-linux-gnu -q
QEMU_CPU=cortex-a76 cargo test -p tern --target aarch64-unknown-linux-gnu -q

step "C ABI: libtern.a and the C programs, host and aarch64 under qemu"
# tests/c/abi_test.c checks every entry point; runtime/examples/c/run.c must print the Rust run_artifact's
# output bits for the same artifact (float and int8) on the same CPU path
cdir="$CARGO_TARGET_DIR/c-abi"
mkdir -p "$cdir"
bits() { "$@" | sed -n 's/.*bits \([0-9a-f]*\)$/\1/p'; }
for target in host aarch64-unknown-linux-gnu; do
  if [ "$target" = host ]; then
    cc=gcc tflag=() lib="$CARGO_TARGET_DIR/release/libtern.a" runner=() cpus=(host)
  else
    cc=aarch64-linux-gnu-gcc tflag=(--target "$target") lib="$CARGO_TARGET_DIR/$target/release/libtern.a"
    runner=(qemu-aarch64 -L /usr/aarch64-linux-gnu) cpus=(cortex-a72 cortex-a76)
  fi
  cargo rustc --release -p tern --features ffi --crate-type staticlib "${tflag[@]}" -q
  cargo build --release -p tern --example run_artifact "${tflag[@]}" -q
  for prog in tests/c/abi_test.c runtime/examples/c/run.c; do
    "$cc" -std=c11 -Wall -Wextra -Werror -O2 -D_POSIX_C_SOURCE=199309L -I runtime/include "$prog" "$lib" \
      -lm -lpthread -ldl -o "$cdir/$target-$(basename "$prog" .c)"
  done
  for cpu in "${cpus[@]}"; do
    export QEMU_CPU="$cpu"
    "${runner[@]}" "$cdir/$target-abi_test" runtime/tests/data | tail -n 1
    rust_runner="$CARGO_TARGET_DIR/${tflag[1]:-}/release/examples/run_artifact"
    for art in cls.tern cls_int8.tern; do
      c=$(bits "${runner[@]}" "$cdir/$target-run" "runtime/tests/data/$art")
      r=$(bits "${runner[@]}" "$rust_runner" "runtime/tests/data/$art")
      echo "$art on $target ($cpu): C bits $c, Rust bits $r"
      [ -n "$c" ] && [ "$c" = "$r" ] || { echo "C ABI and Rust API disagree"; exit 1; }
    done
  done
  unset QEMU_CPU
done

step "all tests passed"
