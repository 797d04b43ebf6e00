// Batched C = A (M x K) * B (K x N) (+ bias) with a fused activation, in 16x16 output tiles whose operands
// pass through workgroup memory 16 k at a time. Workgroups: (column tiles, row tiles, batch).
// p: same as matmul.wgsl (16: B in the f16 copy)
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = p[0];
    let n = p[1];
    let k = p[2];
    let bi = wg.z;
    let row = wg.y * 16u + lid.y;
    let col = wg.x * 16u + lid.x;
    let a0 = p[5] + bi * p[6];
    let b0 = p[8] + bi * p[9];
    var acc = 0.0;
    for (var k0 = 0u; k0 < k; k0 += 16u) {
        let ka = k0 + lid.x;
        var av = 0.0;
        if (row < m && ka < k) {
            av = rd(p[4], a0 + row * k + ka);
        }
        ta[lid.y][lid.x] = av;
        let kb = k0 + lid.y;
        var bv = 0.0;
        if (kb < k && col < n) {
            bv = rdw(b0 + kb * n + col);
        }
        tb[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var t = 0u; t < 16u; t++) {
            acc += ta[lid.y][t] * tb[t][lid.x];
        }
        workgroupBarrier();
    }
    if (row < m && col < n) {
        if (p[11] != 0u) {
            acc += wt(p[12] + col);
        }
        st(p[10] + bi * m * n + row * n + col, unary(acc, p[13], pf(14u), pf(15u)));
    }
}

// operand B: the f16 copy, the f32 weights, or the arena
fn rdw(i: u32) -> f32 {
    if (p[7] == 1u) {
        return wgt(i, p[16]);
    }
    return ld(i);
}
