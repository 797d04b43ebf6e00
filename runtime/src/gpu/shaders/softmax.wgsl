// Softmax along one axis: one row (all other indices fixed) per invocation.
// p: 0 rows, 1 axis length, 2 inner (elements after the axis), 3 x off, 4 out off
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear(gid, nwg);
    if (r >= p[0]) {
        return;
    }
    let len = p[1];
    let inner = p[2];
    let base = (r / inner) * len * inner + r % inner;
    var mx = neg_inf();
    for (var j = 0u; j < len; j++) {
        mx = max(mx, ld(p[3] + base + j * inner));
    }
    var sum = 0.0;
    for (var j = 0u; j < len; j++) {
        let e = exp(ld(p[3] + base + j * inner) - mx);
        st(p[4] + base + j * inner, e);
        sum += e;
    }
    for (var j = 0u; j < len; j++) {
        st(p[4] + base + j * inner, ld(p[4] + base + j * inner) / sum);
    }
}
