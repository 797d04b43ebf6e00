// Per-channel x * scale[c] + shift[c] (inference BatchNormalization) with a fused activation.
// p: 0 n, 1 C, 2 inner (spatial size), 3 act, 4 a, 5 b, 6 x off, 7 scale off (weights), 8 shift off, 9 out off
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    let c = (i / p[2]) % p[1];
    let v = ld(p[6] + i) * wt(p[7] + c) + wt(p[8] + c);
    st(p[9] + i, unary(v, p[3], pf(4u), pf(5u)));
}
