#!/usr/bin/env bash
# The C ABI in firmware: libtern.a for thumbv7em-none-eabihf (no std, feature c-alloc: newlib's
# malloc/free/abort) linked into runtime/examples/c/firmware/main.c for qemu's mps2-an386 board
# (Cortex-M4F), run with semihosting, must print the outputs the same program prints on the host (within
# f32 rounding: without std a multiply-add rounds twice; the int8 layers' integers are the same).
# Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (Debian), rustup's thumbv7em target.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
out="$CARGO_TARGET_DIR/firmware"
mkdir -p "$out"
fw=runtime/examples/c/firmware
cargo rustc --release -p tern --no-default-features --features c-alloc --target thumbv7em-none-eabihf \
  --crate-type staticlib -q
cargo rustc --release -p tern --features ffi --crate-type staticlib -q
mcu=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
for art in cls.tern cls_int8.tern; do
  name="${art%.tern}"
  printf '.section .rodata\n.balign 16\n.global tern_model_start\ntern_model_start:\n.incbin "%s"\n.global tern_model_end\ntern_model_end:\n.section .note.GNU-stack,"",%%progbits\n' \
    "$PWD/runtime/tests/data/$art" > "$out/$name.S"
  gcc -std=c11 -Wall -Wextra -Werror -O2 -I runtime/include "$fw/main.c" "$out/$name.S" \
    "$CARGO_TARGET_DIR/release/libtern.a" -lm -lpthread -ldl -o "$out/$name-host"
  arm-none-eabi-gcc "${mcu[@]}" -std=c11 -Wall -Wextra -Werror -O2 -I runtime/include -nostartfiles \
    -T "$fw/mps2_an386.ld" --specs=rdimon.specs -Wl,--gc-sections,--no-warn-execstack "$fw/main.c" "$fw/startup.c" "$out/$name.S" \
    "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/libtern.a" -lm -o "$out/$name.elf"
  "$out/$name-host" > "$out/$name-host.txt"
  timeout 600 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -kernel "$out/$name.elf" > "$out/$name-fw.txt" || {
    echo "$art: the firmware failed (status $?):"; cat "$out/$name-fw.txt"; exit 1; }
  python3 - "$art" "$out/$name-host.txt" "$out/$name-fw.txt" <<'PY'
import struct, sys
def values(path):
    lines = open(path).read().split("\n")
    v = [struct.unpack("<f", bytes.fromhex(l.split()[3])[::-1])[0] for l in lines if l.startswith("output ")]
    isa = [l.split()[1] for l in lines if l.startswith("isa ")]
    return v, isa[0] if isa else "?"
(h, hi), (f, fi) = values(sys.argv[2]), values(sys.argv[3])
assert h and len(h) == len(f), f"{sys.argv[1]}: {len(h)} host outputs, {len(f)} firmware outputs"
num = sum((a - b) ** 2 for a, b in zip(h, f)) ** 0.5
den = sum(a * a for a in h) ** 0.5
same = sum(a == b for a, b in zip(h, f))
print(f"{sys.argv[1]}: firmware ({fi} path, Cortex-M4 on qemu) vs host ({hi}): rel L2 {num / den:.2e}, {same}/{len(h)} values equal")
assert num <= 1e-5 * den, "the firmware's outputs differ"
PY
done
