// The entry point of the int8 shaders that write four outputs (one packed word) per invocation; each
// defines `one(e)` (output element e), `count()` (elements) and `out_word()` (the output's first word).
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let n = count();
    if (4u * i >= n) {
        return;
    }
    var v = vec4<i32>(0);
    for (var q = 0u; q < 4u; q++) {
        if (4u * i + q < n) {
            v[q] = one(4u * i + q);
        }
    }
    arena[out_word() + i] = pack4(v);
}
