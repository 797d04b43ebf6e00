// 2-D convolution NCHW as an implicit GEMM per group: out[m][pix] = sum_k W[m][k] * X[k][pix] with
// k = (ci, ky, kx) and X the unrolled input (zero in the padding), computed in 16x16 output tiles whose
// operands pass through workgroup memory 16 k at a time. Workgroups: (pixel tiles, channel tiles, N*groups).
// p: same as conv.wgsl (24: weights in the f16 copy; 25-27: the post-activation affine)
// KH, KW, SH, SW, DH, DW: the kernel geometry as `override` constants, declared by the host (p 7..12
// carry the same values)
var<workgroup> wa: array<array<f32, 16>, 16>;
var<workgroup> xb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = p[1]; let h = p[2]; let w = p[3]; let m = p[4]; let oh = p[5]; let ow = p[6];
    let kh = KH; let kw = KW;
    let groups = p[15];
    let cg = c / groups;
    let mg = m / groups;
    let b = wg.z / groups;
    let g = wg.z % groups;
    let npix = oh * ow;
    let k = cg * kh * kw;
    let row = wg.y * 16u + lid.y;
    let col = wg.x * 16u + lid.x;
    var acc = 0.0;
    for (var k0 = 0u; k0 < k; k0 += 16u) {
        // weight tile: row (lid.y) = output channel, col (lid.x) = k
        let kk = k0 + lid.x;
        var wv = 0.0;
        if (row < mg && kk < k) {
            wv = wgt(p[17] + (g * mg + row) * k + kk, p[24]);
        }
        wa[lid.y][lid.x] = wv;
        // input tile: row (lid.y) = k, col (lid.x) = pixel
        let kr = k0 + lid.y;
        var xv = 0.0;
        if (kr < k && col < npix) {
            let ci = kr / (kh * kw);
            let ky = (kr / kw) % kh;
            let kx = kr % kw;
            let oy = col / ow;
            let ox = col % ow;
            let iy = i32(oy * SH + ky * DH) - i32(p[13]);
            let ix = i32(ox * SW + kx * DW) - i32(p[14]);
            if (iy >= 0 && iy < i32(h) && ix >= 0 && ix < i32(w)) {
                xv = ld(p[16] + ((b * c + g * cg + ci) * h + u32(iy)) * w + u32(ix));
            }
        }
        xb[lid.y][lid.x] = xv;
        workgroupBarrier();
        for (var t = 0u; t < 16u; t++) {
            acc += wa[lid.y][t] * xb[t][lid.x];
        }
        workgroupBarrier();
    }
    if (row < mg && col < npix) {
        let mo = g * mg + row;
        if (p[18] != 0u) {
            acc += wt(p[19] + mo);
        }
        var v = unary(acc, p[21], pf(22u), pf(23u));
        if (p[25] != 0u) {
            v = v * wt(p[26] + mo) + wt(p[27] + mo);
        }
        st(p[20] + (b * m + mo) * npix + col, v);
    }
}
