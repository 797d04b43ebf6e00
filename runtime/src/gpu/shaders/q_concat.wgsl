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
    arena[p[2] + i] = pack4(v);
}
