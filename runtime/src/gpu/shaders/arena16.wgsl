// The activation arena as f16 (float artifacts with f16 activations; needs `enable f16;` first): element i
// of a tensor at plan word w is half w + i, so the memory plan's offsets hold unchanged in half the bytes.
// Values are stored as f16 and computed in f32: each op's output is the f32 result rounded to f16.
@group(0) @binding(0) var<storage, read_write> arena: array<f16>;

fn ld(i: u32) -> f32 {
    return f32(arena[i]);
}

// element d of the arena from element s of the arena (src 0, as stored) or an f32 constant (src 1)
fn mv(d: u32, src: u32, s: u32) {
    if (src == 0u) {
        arena[d] = arena[s];
    } else {
        st(d, wt(s));
    }
}

// a finite value beyond f16's range saturates to ±65504 (WGSL leaves that conversion undefined);
// infinities and NaN convert as they are
fn st(i: u32, v: f32) {
    let a = abs(v);
    if (a > 65504.0 && a <= 3.40282347e38) {
        arena[i] = f16(sign(v) * 65504.0);
    } else {
        arena[i] = f16(v);
    }
}
