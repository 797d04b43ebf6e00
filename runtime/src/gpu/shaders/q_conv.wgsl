// int8 convolution NCHW (groups, strides, dilations, pads), the CPU's integers exactly:
// acc = sum w * (x - zp_in) over valid taps, then requant(acc, bias[m], mult[m], shift[m], zp_out, lo, hi).
// Weights come repacked per tap with four input channels per word (zero-padded), so each tap is packed dot
// products (`dot4`: WGSL's dot4I8Packed or its shift-and-mask twin) minus zp_in times the tap's weight sum.
// Four outputs (one word) per invocation.
// p: 0 N, 1 C, 2 H, 3 W, 4 M, 5 OH, 6 OW, 7 kh, 8 kw, 9 sh, 10 sw, 11 dh, 12 dw, 13 pt, 14 pl, 15 groups,
//    16 x byte off, 17 packed weights word off ([M][kh][kw][ceil(C/groups/4)]), 18 has bias, 19 bias word
//    off, 20 out word off, 21 zp_in, 22 zp_out, 23 lo, 24 hi, 25 (mult, shift) list start in p, 26 tap weight
//    sums word off ([M][kh][kw])
// KH, KW, SH, SW, DH, DW: the kernel geometry as `override` constants, declared by the host (p 7..12
// carry the same values)
fn one(e: u32) -> i32 {
    let c = p[1]; let h = p[2]; let w = p[3]; let m = p[4]; let oh = p[5]; let ow = p[6];
    let kh = KH; let kw = KW;
    let ox = e % ow;
    let oy = (e / ow) % oh;
    let mo = (e / (ow * oh)) % m;
    let b = e / (ow * oh * m);
    let cg = c / p[15];
    let mg = m / p[15];
    let g = mo / mg;
    let cw = (cg + 3u) / 4u;
    let zp = bitcast<i32>(p[21]);
    let plane = h * w;
    let xb = p[16] + (b * c + g * cg) * plane;
    var acc = 0;
    for (var ky = 0u; ky < kh; ky++) {
        let iy = i32(oy * SH + ky * DH) - i32(p[13]);
        if (iy < 0 || iy >= i32(h)) {
            continue;
        }
        for (var kx = 0u; kx < kw; kx++) {
            let ix = i32(ox * SW + kx * DW) - i32(p[14]);
            if (ix < 0 || ix >= i32(w)) {
                continue;
            }
            let tap = (mo * kh + ky) * kw + kx;
            let at = xb + u32(iy) * w + u32(ix);
            for (var q = 0u; q < cw; q++) {
                var v = vec4<i32>(0);
                for (var t = 0u; t < 4u; t++) {
                    let ci = 4u * q + t;
                    if (ci < cg) {
                        v[t] = ld8b(at + ci * plane);
                    }
                }
                acc += dot4(pack4(v), weights[p[17] + tap * cw + q]);
            }
            acc -= zp * bitcast<i32>(weights[p[26] + tap]);
        }
    }
    var bias = 0;
    if (p[18] != 0u) {
        bias = bitcast<i32>(weights[p[19] + mo]);
    }
    let q = p[25] + 2u * mo;
    return requant(acc, bias, bitcast<i32>(p[q]), bitcast<i32>(p[q + 1u]), bitcast<i32>(p[22]), bitcast<i32>(p[23]), bitcast<i32>(p[24]));
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0] * p[4] * p[5] * p[6];
}

fn out_word() -> u32 {
    return p[20];
}
