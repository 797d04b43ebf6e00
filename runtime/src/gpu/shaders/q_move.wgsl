// int8 data movement: an axis-separable gather (Slice, Pad, nearest Resize, Transpose, Reshape) from the
// CPU's per-axis index maps (source element offsets, negative = fill). Four outputs per invocation.
// p: 0 n, 1 rank, 2 x src, 3 x byte off, 4 out word off, 5 fill, 6..12 out dims, 12..18 map starts, maps...
fn one(e: u32) -> i32 {
    let rank = p[1];
    var rem = e;
    var src = 0;
    var fill = false;
    for (var d = 0u; d < rank; d++) {
        let k = rank - 1u - d;
        let c = rem % p[6u + k];
        rem = rem / p[6u + k];
        let m = bitcast<i32>(p[p[12u + k] + c]);
        fill = fill || m < 0;
        src += m;
    }
    if (fill) {
        return bitcast<i32>(p[5]);
    }
    return rd8b(p[2], p[3] + u32(src));
}

// four outputs per invocation: q4_main.wgsl's `main` over these
fn count() -> u32 {
    return p[0];
}

fn out_word() -> u32 {
    return p[4];
}
