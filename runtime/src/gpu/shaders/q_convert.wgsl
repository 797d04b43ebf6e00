// int8 <-> f32 and int8 lookup tables, element-wise. Four int8 values per invocation.
// p: 0 kind (0 quantize f32 -> int8, 1 dequantize int8 -> f32, 2 table), 1 n, 2 x word off, 3 out word off,
//    4 scale (f32 bits), 5 zero point; for tables: 4 plane size, 5 tables (one, or one per channel: element e
//    takes table (e / plane) % tables), 6.. the tables (i32, 256 each, indexed by q + 128)
fn quantize(x: f32) -> i32 {
    // ONNX QuantizeLinear: round half to even, saturate (WGSL's round() is half-to-even)
    let v = clamp(x / pf(4u), -256.0, 256.0);
    return clamp(i32(round(v)) + bitcast<i32>(p[5]), -128, 127);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let n = p[1];
    if (4u * i >= n) {
        return;
    }
    let kind = p[0];
    if (kind == 1u) {
        for (var q = 0u; q < 4u; q++) {
            let e = 4u * i + q;
            if (e < n) {
                st(p[3] + e, f32(ld8b(4u * p[2] + e) - bitcast<i32>(p[5])) * pf(4u));
            }
        }
        return;
    }
    var v = vec4<i32>(0);
    for (var q = 0u; q < 4u; q++) {
        let e = 4u * i + q;
        if (e < n) {
            if (kind == 0u) {
                v[q] = quantize(ld(p[2] + e));
            } else {
                let tab = (e / p[4]) % p[5];
                v[q] = bitcast<i32>(p[6u + 256u * tab + u32(ld8b(4u * p[2] + e) + 128)]);
            }
        }
    }
    arena[p[3] + i] = pack4(v);
}
