// Shared by every tern shader: the bindings and small helpers. The host concatenates the directives
// (`enable f16`, `requires`), the step's `override` declarations, one arena prelude (arena32.wgsl, or
// arena16.wgsl for f16 activations), this file, the `dot4` form, the op's shader and, for the four-outputs
// int8 shaders, q4_main.wgsl.
//   weights: the artifact's weight blob, uploaded once (constants at their blob offsets), same words
//   p:       this dispatch's parameters (u32 words; floats as bit patterns)
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;
//   weights16: the weight tensors a session keeps as f16 (two halves per word)
@group(0) @binding(3) var<storage, read> weights16: array<u32>;

fn wt(i: u32) -> f32 {
    return bitcast<f32>(weights[i]);
}

// a weight read: index i of the f16 copy when `half` (this dispatch's flag), else of the f32 blob
fn wgt(i: u32, half: u32) -> f32 {
    if (half != 0u) {
        return unpack2x16float(weights16[i >> 1u])[i & 1u];
    }
    return wt(i);
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
        case 17u: { return v * (1.0 / (1.0 + exp(-v))); }
        default: { return v; }
    }
}

// A pooling window along one axis: the taps [lo, hi) of `k` (dilation `d`, first tap at `c0`) that land
// inside [0, n), and how many land inside the declared extent [c0's padding, n + pad_end): windows visit
// only the taps inside the input (a kernel far larger than the input costs nothing extra).
fn window_taps(c0: i32, k: i32, d: i32, n: i32, pad_end: i32) -> vec3<i32> {
    let lo = select(0, min(k, (-c0 + d - 1) / d), c0 < 0);
    let hi = select(0, min(k, (n - c0 + d - 1) / d), n > c0);
    let decl = select(0, min(k, (n + pad_end - c0 + d - 1) / d), n + pad_end > c0);
    return vec3<i32>(lo, max(hi, lo), decl);
}

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// ---- int8: four values per 32-bit word, little-endian ----

fn pack4(v: vec4<i32>) -> u32 {
    let b = vec4<u32>(bitcast<vec4<u32>>(v) & vec4<u32>(0xffu));
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

// `a + b` saturated to i32 (the CPU's saturating_add)
fn sat_add(a: i32, b: i32) -> i32 {
    let s = a + b;
    if (((s ^ a) & (s ^ b)) < 0) {
        return select(2147483647, -2147483648, a < 0);
    }
    return s;
}

// ir::quant::FixedMultiplier::apply, exactly: round_half_away(acc * mult / 2^(31 + shift)), saturated,
// with the 64-bit product built from 16-bit limbs (WGSL has no 64-bit integers)
fn fm_apply(acc: i32, mult: i32, shift: i32) -> i32 {
    let total = 31 + shift;
    if (total >= 63) {
        return 0;
    }
    let neg = acc < 0;
    let ua = select(bitcast<u32>(acc), ~bitcast<u32>(acc) + 1u, neg);
    let um = bitcast<u32>(mult);
    let a0 = ua & 0xffffu;
    let a1 = ua >> 16u;
    let b0 = um & 0xffffu;
    let b1 = um >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    var lo = (p00 & 0xffffu) | (mid << 16u);
    var hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    if (neg) {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    let prod_neg = bitcast<i32>(hi) < 0;
    if (total <= 0) {
        // a multiplier >= 1: shift left, saturate
        let s = u32(-total);
        let sl = bitcast<i32>(lo);
        if (bitcast<i32>(hi) == (sl >> 31u) && s < 32u) {
            let v = sl << s;
            if ((v >> s) == sl) {
                return v;
            }
        }
        if (lo == 0u && hi == 0u) {
            return 0;
        }
        return select(2147483647, -2147483648, prod_neg);
    }
    // + 2^(total-1) - [prod < 0], then an arithmetic shift right by total
    let t1 = u32(total - 1);
    var rlo = 0u;
    var rhi = 0u;
    if (t1 < 32u) {
        rlo = 1u << t1;
    } else {
        rhi = 1u << (t1 - 32u);
    }
    var flo = lo + rlo;
    var fhi = hi + rhi + select(0u, 1u, flo < lo);
    if (prod_neg) {
        fhi = fhi - select(0u, 1u, flo == 0u);
        flo = flo - 1u;
    }
    let t = u32(total);
    if (t >= 32u) {
        return bitcast<i32>(fhi) >> (t - 32u);
    }
    let low = bitcast<i32>((flo >> t) | (fhi << (32u - t)));
    let high = bitcast<i32>(fhi) >> t;
    if (high == (low >> 31u)) {
        return low;
    }
    return select(2147483647, -2147483648, high < 0);
}

// the CPU's Requant::apply: saturating bias add, fixed-point multiply, zero point, clamp
fn requant(acc: i32, bias: i32, mult: i32, shift: i32, zp: i32, lo: i32, hi: i32) -> i32 {
    let v = fm_apply(sat_add(acc, bias), mult, shift);
    return clamp(sat_add(v, zp), lo, hi);
}

// int8 element at byte b of the weights (int8 constants are byte-aligned in the blob)
fn wt8b(b: u32) -> i32 {
    return extractBits(bitcast<i32>(weights[b >> 2u]), (b & 3u) * 8u, 8u);
}
