// int8 transposed convolution with kernel = stride (no padding, one group), the CPU's integers exactly:
// output (mo, oy, ox) takes the single tap (ky, kx) = (oy % kh, ox % kw) at input (oy / kh, ox / kw):
// acc = sum_ci w[ci][mo][ky][kx] * (x - zp_in), requantized with the multiplier of row (mo, ky, kx).
// Four outputs per invocation.
// p: 0 N, 1 C, 2 H, 3 W, 4 M, 5 kh, 6 kw, 7 x byte off, 8 w byte off (weights), 9 has bias, 10 bias word
//    off, 11 out word off, 12 zp_in, 13 zp_out, 14 lo, 15 hi, 16 (mult, shift) list start (per row)
fn one(e: u32) -> i32 {
    let c = p[1]; let h = p[2]; let w = p[3]; let m = p[4]; let kh = p[5]; let kw = p[6];
    let oh = h * kh;
    let ow = w * kw;
    let ox = e % ow;
    let oy = (e / ow) % oh;
    let mo = (e / (ow * oh)) % m;
    let b = e / (ow * oh * m);
    let ky = oy % kh;
    let kx = ox % kw;
    let at = (oy / kh) * w + ox / kw;
    let zp = bitcast<i32>(p[12]);
    var acc = 0;
    for (var ci = 0u; ci < c; ci++) {
        let wv = wt8b(p[8] + ((ci * m + mo) * kh + ky) * kw + kx);
        acc += wv * (ld8b(p[7] + (b * c + ci) * h * w + at) - zp);
    }
    var bias = 0;
    if (p[9] != 0u) {
        bias = bitcast<i32>(weights[p[10] + mo]);
    }
    let q = p[16] + 2u * ((mo * kh + ky) * kw + kx);
    return requant(acc, bias, bitcast<i32>(p[q]), bitcast<i32>(p[q + 1u]), bitcast<i32>(p[13]), bitcast<i32>(p[14]), bitcast<i32>(p[15]));
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0] * p[4] * p[2] * p[5] * p[3] * p[6];
}

fn out_word() -> u32 {
    return p[11];
}
