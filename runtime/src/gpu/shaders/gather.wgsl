// Axis-separable gather (Slice, Pad in every mode, nearest Resize): the CPU's per-axis index maps
// (source element offsets, negative = fill) follow the header, so both backends read the same elements.
// p: 0 n, 1 rank, 2 x off, 3 out off, 4 fill (f32 bits), 5 x src, 6..12 out dims, 12..18 map starts (word
//    index in p), then the maps as i32
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p[0]) {
        return;
    }
    let rank = p[1];
    var rem = i;
    var src = 0;
    var fill = false;
    for (var d = 0u; d < rank; d++) {
        let k = rank - 1u - d;
        let c = rem % p[6u + k];
        rem = rem / p[6u + k];
        let m = bitcast<i32>(p[p[12u + k] + c]);
        fill = fill || m < 0;
        src += m;
    }
    if (fill) {
        st(p[3] + i, pf(4u));
    } else {
        st(p[3] + i, rd(p[5], p[2] + u32(src)));
    }
}
