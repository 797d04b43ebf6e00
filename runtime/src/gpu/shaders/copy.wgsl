// Reshape: a flat copy of arena elements (f32, f16 or four packed int8 per word), moved as they are
// stored (`mv`: no float round trip, which need not keep NaN bit patterns such as four int8 -1s).
// p: 0 n (elements, or words for int8), 1 src off, 2 dst off, 3 src (0 arena, 1 weights)
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    mv(p[2] + i, p[3], p[1] + i);
}
