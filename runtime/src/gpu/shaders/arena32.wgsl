// The activation arena as 32-bit words: an f32, or four int8 values (little-endian), laid out by the
// artifact's memory plan (word index = byte offset / 4).
@group(0) @binding(0) var<storage, read_write> arena: array<u32>;

fn ld(i: u32) -> f32 {
    return bitcast<f32>(arena[i]);
}

fn st(i: u32, v: f32) {
    arena[i] = bitcast<u32>(v);
}

// element d of the arena from element s of the arena (src 0) or the weights (src 1), as stored
fn mv(d: u32, src: u32, s: u32) {
    if (src == 0u) {
        arena[d] = arena[s];
    } else {
        arena[d] = weights[s];
    }
}

// int8 element at byte b of the arena
fn ld8b(b: u32) -> i32 {
    return extractBits(bitcast<i32>(arena[b >> 2u]), (b & 3u) * 8u, 8u);
}

fn rd8b(src: u32, b: u32) -> i32 {
    if (src == 0u) {
        return ld8b(b);
    }
    return wt8b(b);
}
