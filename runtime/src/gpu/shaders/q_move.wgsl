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

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (4u * i >= p[0]) {
        return;
    }
    var v = vec4<i32>(0);
    for (var q = 0u; q < 4u; q++) {
        if (4u * i + q < p[0]) {
            v[q] = one(4u * i + q);
        }
    }
    arena[p[4] + i] = pack4(v);
}
