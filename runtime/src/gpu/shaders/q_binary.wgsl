// int8 Add/Sub (both operands through the CPU's rescale tables, 16 fraction bits, round half away) and
// Mul (fixed-point product) with numpy broadcasting (rank <= 6). Four outputs per invocation.
// p: 0 n, 1 rank, 2 op (0 add, 1 sub, 2 mul), 3 a src, 4 a byte off, 5 b src, 6 b byte off, 7 out word off,
//    8 zy, 9 lo, 10 hi, 11 za, 12 zb, 13 mult, 14 shift, 15..21 out dims, 21..27 a strides, 27..33 b
//    strides, 33..289 table a, 289..545 table b
fn one(e: u32) -> i32 {
    let rank = p[1];
    var rem = e;
    var ia = 0u;
    var ib = 0u;
    for (var d = 0u; d < rank; d++) {
        let k = rank - 1u - d;
        let c = rem % p[15u + k];
        rem = rem / p[15u + k];
        ia += c * p[21u + k];
        ib += c * p[27u + k];
    }
    let a = rd8b(p[3], p[4] + ia);
    let b = rd8b(p[5], p[6] + ib);
    var v = 0;
    if (p[2] == 2u) {
        v = fm_apply((a - bitcast<i32>(p[11])) * (b - bitcast<i32>(p[12])), bitcast<i32>(p[13]), bitcast<i32>(p[14]));
    } else {
        let ta = bitcast<i32>(p[33u + u32(a + 128)]);
        let tb = bitcast<i32>(p[289u + u32(b + 128)]);
        let s = select(ta + tb, ta - tb, p[2] == 1u);
        v = (s + 32768 - select(0, 1, s < 0)) >> 16u;
    }
    return clamp(sat_add(v, bitcast<i32>(p[8])), bitcast<i32>(p[9]), bitcast<i32>(p[10]));
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0];
}

fn out_word() -> u32 {
    return p[7];
}
