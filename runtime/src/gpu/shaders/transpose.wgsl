// Axis permutation (rank <= 6): output index -> input offset through the permuted input strides.
// p: 0 n, 1 rank, 2 x off, 3 out off, 4..10 out dims, 10..16 input strides in output axis order
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    let rank = p[1];
    var rem = i;
    var src = 0u;
    for (var d = 0u; d < rank; d++) {
        let k = rank - 1u - d;
        let c = rem % p[4u + k];
        rem = rem / p[4u + k];
        src += c * p[10u + k];
    }
    st(p[3] + i, ld(p[2] + src));
}
