// Element-wise unary or binary op with numpy broadcasting (rank <= 6) and a fused activation.
// p: 0 n, 1 rank, 2 binop (99: unary only), 3 act, 4 act a, 5 act b, 6 a src, 7 a off, 8 b src, 9 b off,
//    10 out off, 11..17 out dims, 17..23 a strides, 23..29 b strides
fn pw(x: f32, y: f32) -> f32 {
    // WGSL pow is undefined for x < 0: integer exponents keep their sign like C's powf
    if (x < 0.0 && y == floor(y)) {
        let r = pow(-x, y);
        return select(r, -r, (i32(y) & 1) == 1);
    }
    return pow(x, y);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    let rank = p[1];
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = 0u; d < rank; d++) {
        let k = rank - 1u - d;
        let dim = p[11u + k];
        let c = rem % dim;
        rem = rem / dim;
        ia += c * p[17u + k];
        ib += c * p[23u + k];
    }
    var v = rd(p[6], p[7] + ia);
    let op = p[2];
    if (op != 99u) {
        let b = rd(p[8], p[9] + ib);
        switch op {
            case 0u: { v = v + b; }
            case 1u: { v = v - b; }
            case 2u: { v = v * b; }
            case 3u: { v = v / b; }
            case 4u: { v = pw(v, b); }
            case 5u: { v = max(v, b); }
            default: { v = min(v, b); }
        }
    }
    st(p[10] + i, unary(v, p[3], pf(4u), pf(5u)));
}
