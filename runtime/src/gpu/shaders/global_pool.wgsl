// Global max / average pooling: one (n, c) plane per invocation.
// p: 0 planes, 1 plane size, 2 kind (0 max, 1 avg), 3 x off, 4 out off
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    let n = p[1];
    let base = p[3] + i * n;
    var acc = select(0.0, neg_inf(), p[2] == 0u);
    for (var j = 0u; j < n; j++) {
        let v = ld(base + j);
        acc = select(acc + v, max(acc, v), p[2] == 0u);
    }
    if (p[2] != 0u) {
        acc = acc / f32(n);
    }
    st(p[4] + i, acc);
}
