// int8 pooling as the CPU defines it: max keeps the input's values; average sums (x - zx) over the valid
// cells and rescales by the multiplier for that divisor (plus the output zero point). Global pooling is a
// window over the whole plane. Four outputs per invocation.
// p: 0 N*C, 1 H, 2 W, 3 OH, 4 OW, 5 kh, 6 kw, 7 sh, 8 sw, 9 dh, 10 dw, 11 pt, 12 pl, 13 kind (0 max,
//    1 avg, 2 avg counting pads), 14 x byte off, 15 out word off, 16 real bottom pad, 17 real right pad,
//    18 zx, 19 zy, 20 multipliers (count), then (mult, shift) per divisor 0..count-1
fn one(e: u32) -> i32 {
    let h = i32(p[1]); let w = i32(p[2]); let oh = p[3]; let ow = p[4];
    let ox = i32(e % ow);
    let oy = i32((e / ow) % oh);
    let plane = e / (ow * oh);
    let base = p[14] + plane * u32(h * w);
    let y0 = oy * i32(p[7]) - i32(p[11]);
    let x0 = ox * i32(p[8]) - i32(p[12]);
    let kind = p[13];
    let zx = bitcast<i32>(p[18]);
    var mx = -128;
    var sum = 0;
    let ty = window_taps(y0, i32(p[5]), i32(p[9]), h, i32(p[16]));
    let tx = window_taps(x0, i32(p[6]), i32(p[10]), w, i32(p[17]));
    for (var ky = ty.x; ky < ty.y; ky++) {
        let iy = y0 + ky * i32(p[9]);
        for (var kx = tx.x; kx < tx.y; kx++) {
            let ix = x0 + kx * i32(p[10]);
            let v = ld8b(base + u32(iy * w + ix));
            mx = max(mx, v);
            sum += v - zx;
        }
    }
    let count = u32((ty.y - ty.x) * (tx.y - tx.x));
    let padded = u32(ty.z * tx.z) - count;
    if (kind == 0u) {
        return mx;
    }
    let div = select(count, count + padded, kind == 2u);
    let zy = bitcast<i32>(p[19]);
    if (div == 0u) {
        return zy;
    }
    let mi = 21u + 2u * min(div, p[20] - 1u);
    return clamp(fm_apply(sum, bitcast<i32>(p[mi]), bitcast<i32>(p[mi + 1u])) + zy, -128, 127);
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0] * p[3] * p[4];
}

fn out_word() -> u32 {
    return p[15];
}
