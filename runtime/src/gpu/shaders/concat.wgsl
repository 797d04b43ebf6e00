// Concat (one dispatch for all inputs): each output value comes from the input whose part of the axis
// holds it. Split is the mirror image (one dispatch for all outputs): each input value goes to the output
// whose part holds it.
// p: 0 n, 1 block (axis length * inner of the whole tensor), 2 whole tensor word off, 3 parts, 4 mode
//    (0 concat: whole = output, 1 split: whole = input), then per part 4 words: part start, part length
//    (axis length * inner), part word off, source of the read (0 arena, 1 weights: the part's for
//    concat, the whole tensor's for split)
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear(gid, nwg);
    if (e >= p[0]) {
        return;
    }
    let o = e / p[1];
    let pos = e % p[1];
    for (var k = 0u; k < p[3]; k++) {
        let d = 5u + 4u * k;
        let start = p[d];
        let len = p[d + 1u];
        if (pos >= start && pos < start + len) {
            let part = p[d + 2u] + o * len + (pos - start);
            if (p[4] == 0u) {
                st(p[2] + e, rd(p[d + 3u], part));
            } else {
                st(part, rd(p[d + 3u], p[2] + e));
            }
            return;
        }
    }
}
