// int8 x [rows, K] * W [K, N] + bias, the CPU's integers exactly (per-tensor or per-column multipliers).
// Four outputs (one word) per invocation.
// The weights come as W^T packed four k-values per word (zero-padded), so each step is one packed dot
// product (`dot4`: WGSL's dot4I8Packed or its shift-and-mask twin); the input zero point is folded into the
// bias on the host (bias - zp_in * sum_k w), exact in i32 within the loader's bounds.
// p: 0 rows, 1 K, 2 N, 3 x byte off, 4 (unused), 5 (unused), 6 folded bias word off (weights), 7 out word
//    off, 8 (unused), 9 zp_out, 10 lo, 11 hi, 12 (mult, shift) list start in p, 13 per-column (1) or one pair
//    (0), 14 packed W^T word off (weights), 15 words per column
fn one(e: u32) -> i32 {
    let k = p[1];
    let n = p[2];
    let r = e / n;
    let j = e % n;
    let kw = p[15];
    let wbase = p[14] + j * kw;
    let xb = p[3] + r * k;
    var acc = 0;
    for (var q = 0u; q < kw; q++) {
        var v = vec4<i32>(0);
        for (var t = 0u; t < 4u; t++) {
            let kk = 4u * q + t;
            if (kk < k) {
                v[t] = ld8b(xb + kk);
            }
        }
        acc += dot4(pack4(v), weights[wbase + q]);
    }
    let bias = bitcast<i32>(weights[p[6] + j]);
    let mi = p[12] + 2u * select(0u, j, p[13] != 0u);
    return requant(acc, bias, bitcast<i32>(p[mi]), bitcast<i32>(p[mi + 1u]), bitcast<i32>(p[9]), bitcast<i32>(p[10]), bitcast<i32>(p[11]));
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0] * p[2];
}

fn out_word() -> u32 {
    return p[7];
}
