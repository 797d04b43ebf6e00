// Shared by every tern shader: the three bindings and small helpers. The host concatenates this file in
// front of each op's shader.
//   arena:   the session's activations, laid out by the artifact's memory plan (32-bit words: an f32, or
//            four int8 values, little-endian)
//   weights: the artifact's weight blob, uploaded once (constants at their blob offsets), same words
//   p:       this dispatch's parameters (u32 words; floats as bit patterns)
@group(0) @binding(0) var<storage, read_write> arena: array<u32>;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

fn ld(i: u32) -> f32 {
    return bitcast<f32>(arena[i]);
}

fn st(i: u32, v: f32) {
    arena[i] = bitcast<u32>(v);
}

fn wt(i: u32) -> f32 {
    return bitcast<f32>(weights[i]);
}

const WG: u32 = 64u;

fn pf(i: u32) -> f32 {
    return bitcast<f32>(p[i]);
}

// linear invocation index over a 2-D grid of workgroups (one dimension holds at most 65535 groups)
fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WG + gid.x;
}

// operand source: 0 = arena, 1 = weights
fn rd(src: u32, i: u32) -> f32 {
    if (src == 0u) {
        return ld(i);
    }
    return wt(i);
}

// erf to ~1.5e-7 absolute (Abramowitz & Stegun 7.1.26); WGSL has no erf
fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

// element-wise functions and fused activations (codes as in gpu/mod.rs `unary_code`)
fn unary(v: f32, code: u32, a: f32, b: f32) -> f32 {
    switch code {
        case 1u: { return max(v, 0.0); }
        case 2u: { return min(max(v, a), b); }
        case 3u: { return 1.0 / (1.0 + exp(-v)); }
        case 4u: { return min(max(a * v + b, 0.0), 1.0); }
        case 5u: { return v * min(max(v / 6.0 + 0.5, 0.0), 1.0); }
        case 6u: { return select(a * v, v, v >= 0.0); }
        case 7u: { return erf_approx(v); }
        case 8u: { return sqrt(v); }
        case 9u: { return exp(v); }
        case 10u: { return log(v); }
        case 11u: { return tanh(v); }
        case 12u: { return abs(v); }
        case 13u: { return -v; }
        case 14u: { return 1.0 / v; }
        case 15u: { return floor(v); }
        case 16u: { return ceil(v); }
        default: { return v; }
    }
}

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}
