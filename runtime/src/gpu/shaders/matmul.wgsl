// Batched C[b] = A[b] (M x K) * B[b] (K x N) (+ bias[N]) with a fused activation; one output per
// invocation, 4 partial sums so the k loop is not one long dependency chain.
// p: 0 M, 1 N, 2 K, 3 batch, 4 a src, 5 a off, 6 a batch stride, 7 b src, 8 b off, 9 b batch stride,
//    10 out off, 11 has bias, 12 bias off (weights), 13 act, 14 a, 15 b, 16 B in the f16 copy
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let m = p[0];
    let n = p[1];
    let k = p[2];
    if (i >= m * n * p[3]) {
        return;
    }
    let bi = i / (m * n);
    let r = (i / n) % m;
    let c = i % n;
    let a0 = p[5] + bi * p[6] + r * k;
    let b0 = p[8] + bi * p[9] + c;
    var s = vec4<f32>(0.0);
    var q = 0u;
    for (; q + 4u <= k; q += 4u) {
        s += vec4<f32>(rd(p[4], a0 + q), rd(p[4], a0 + q + 1u), rd(p[4], a0 + q + 2u), rd(p[4], a0 + q + 3u))
            * vec4<f32>(rdw(b0 + q * n), rdw(b0 + (q + 1u) * n), rdw(b0 + (q + 2u) * n), rdw(b0 + (q + 3u) * n));
    }
    var acc = (s.x + s.y) + (s.z + s.w);
    for (; q < k; q++) {
        acc += rd(p[4], a0 + q) * rdw(b0 + q * n);
    }
    if (p[11] != 0u) {
        acc += wt(p[12] + c);
    }
    st(p[10] + i, unary(acc, p[13], pf(14u), pf(15u)));
}

// operand B: the f16 copy, the f32 weights, or the arena
fn rdw(i: u32) -> f32 {
    if (p[7] == 1u) {
        return wgt(i, p[16]);
    }
    return ld(i);
}
