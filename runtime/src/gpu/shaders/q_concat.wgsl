// int8 Concat in one dispatch: each output value comes from the input whose part of the axis holds it,
// through that input's rescale table when its parameters differ from the output's. Four per invocation.
// p: 0 n, 1 out block (axis length * inner), 2 out word off, 3 inputs, then per input 5 words:
//    part start, part length (axis length * inner), byte off, table start in p (0: none), unused
fn one(e: u32) -> i32 {
    let o = e / p[1];
    let pos = e % p[1];
    for (var k = 0u; k < p[3]; k++) {
        let d = 4u + 5u * k;
        let start = p[d];
        let len = p[d + 1u];
        if (pos >= start && pos < start + len) {
            let v = ld8b(p[d + 2u] + o * len + (pos - start));
            if (p[d + 3u] != 0u) {
                return bitcast<i32>(p[p[d + 3u] + u32(v + 128)]);
            }
            return v;
        }
    }
    return 0;
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0];
}

fn out_word() -> u32 {
    return p[2];
}
