// int8 x [rows, K] * W [K, N] + bias, the CPU's integers exactly (per-tensor or per-column multipliers).
// Four outputs (one word) per invocation.
// p: 0 rows, 1 K, 2 N, 3 x byte off, 4 w byte off (weights), 5 has bias, 6 bias word off, 7 out word off,
//    8 zp_in, 9 zp_out, 10 lo, 11 hi, 12 (mult, shift) list start in p, 13 per-column (1) or one pair (0)
fn one(e: u32) -> i32 {
    let k = p[1];
    let n = p[2];
    let r = e / n;
    let j = e % n;
    let zp = bitcast<i32>(p[8]);
    var acc = 0;
    for (var q = 0u; q < k; q++) {
        acc += wt8b(p[4] + q * n + j) * (ld8b(p[3] + r * k + q) - zp);
    }
    var bias = 0;
    if (p[5] != 0u) {
        bias = bitcast<i32>(weights[p[6] + j]);
    }
    let mi = p[12] + 2u * select(0u, j, p[13] != 0u);
    return requant(acc, bias, bitcast<i32>(p[mi]), bitcast<i32>(p[mi + 1u]), bitcast<i32>(p[9]), bitcast<i32>(p[10]), bitcast<i32>(p[11]));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let total = p[0] * p[2];
    if (4u * i >= total) {
        return;
    }
    var v = vec4<i32>(0);
    for (var q = 0u; q < 4u; q++) {
        if (4u * i + q < total) {
            v[q] = one(4u * i + q);
        }
    }
    arena[p[7] + i] = pack4(v);
}
