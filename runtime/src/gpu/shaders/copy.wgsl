// Block copy: `blocks` runs of `len` elements, src[s_off + o*s_stride + j] -> dst[d_off + o*d_stride + j]
// (Reshape, one input of a Concat, one output of a Split).
// p: 0 total (blocks * len), 1 len, 2 src off, 3 src stride, 4 dst off, 5 dst stride, 6 src (0 arena,
//    1 weights)
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    let o = i / p[1];
    let j = i % p[1];
    st(p[4] + o * p[5] + j, rd(p[6], p[2] + o * p[3] + j));
}
