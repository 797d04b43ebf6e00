// 2-D convolution NCHW (groups, strides, dilations, pads) with bias and a fused activation, direct form:
// one output per invocation.
// p: 0 N, 1 C, 2 H, 3 W, 4 M, 5 OH, 6 OW, 7 kh, 8 kw, 9 sh, 10 sw, 11 dh, 12 dw, 13 pt, 14 pl, 15 groups,
//    16 x off, 17 w off (weights), 18 has bias, 19 bias off, 20 out off, 21 act, 22 a, 23 b, 24 weights
//    in the f16 copy, 25 has a post-activation affine, 26 its scale off, 27 its shift off (weights)
// KH, KW, SH, SW, DH, DW: the kernel geometry as `override` constants, declared by the host (p 7..12
// carry the same values)
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let c = p[1]; let h = p[2]; let w = p[3]; let m = p[4]; let oh = p[5]; let ow = p[6];
    let kh = KH; let kw = KW;
    if (i >= p[0] * m * oh * ow) {
        return;
    }
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let mo = (i / (ow * oh)) % m;
    let b = i / (ow * oh * m);
    let cg = c / p[15];
    let mg = m / p[15];
    let g = mo / mg;
    var acc = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        let xbase = p[16] + ((b * c + g * cg + ci) * h) * w;
        let wbase = p[17] + (mo * cg + ci) * kh * kw;
        for (var ky = 0u; ky < kh; ky++) {
            let iy = i32(oy * SH + ky * DH) - i32(p[13]);
            if (iy < 0 || iy >= i32(h)) {
                continue;
            }
            for (var kx = 0u; kx < kw; kx++) {
                let ix = i32(ox * SW + kx * DW) - i32(p[14]);
                if (ix < 0 || ix >= i32(w)) {
                    continue;
                }
                acc += ld(xbase + u32(iy) * w + u32(ix)) * wgt(wbase + ky * kw + kx, p[24]);
            }
        }
    }
    if (p[18] != 0u) {
        acc += wt(p[19] + mo);
    }
    var v = unary(acc, p[21], pf(22u), pf(23u));
    if (p[25] != 0u) {
        v = v * wt(p[26] + mo) + wt(p[27] + mo);
    }
    st(p[20] + i, v);
}
