// 2-D max / average pooling NCHW (pads, dilations, ceil-mode extra cells) as the CPU defines it: average
// divides by the valid cells, plus the padding cells (not the ceil-mode extra) when counted.
// p: 0 N*C, 1 H, 2 W, 3 OH, 4 OW, 5 kh, 6 kw, 7 sh, 8 sw, 9 dh, 10 dw, 11 pt, 12 pl, 13 kind (0 max,
//    1 avg, 2 avg counting pads), 14 x off, 15 out off, 16 real bottom pad, 17 real right pad
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let h = i32(p[1]); let w = i32(p[2]); let oh = p[3]; let ow = p[4];
    if (i >= p[0] * oh * ow) {
        return;
    }
    let ox = i32(i % ow);
    let oy = i32((i / ow) % oh);
    let plane = i / (ow * oh);
    let base = p[14] + plane * u32(h * w);
    let y0 = oy * i32(p[7]) - i32(p[11]);
    let x0 = ox * i32(p[8]) - i32(p[12]);
    let kind = p[13];
    var acc = select(0.0, neg_inf(), kind == 0u);
    var seen_any = false;
    let ty = window_taps(y0, i32(p[5]), i32(p[9]), h, i32(p[16]));
    let tx = window_taps(x0, i32(p[6]), i32(p[10]), w, i32(p[17]));
    for (var ky = ty.x; ky < ty.y; ky++) {
        let iy = y0 + ky * i32(p[9]);
        for (var kx = tx.x; kx < tx.y; kx++) {
            let ix = x0 + kx * i32(p[10]);
            let v = ld(base + u32(iy * w + ix));
            if (kind == 0u) {
                acc = max(acc, v);
                seen_any = true;
            } else {
                acc += v;
            }
        }
    }
    let count = u32((ty.y - ty.x) * (tx.y - tx.x));
    let padded = u32(ty.z * tx.z) - count;
    var out = acc;
    if (kind == 0u) {
        out = select(neg_inf(), acc, seen_any);
    } else {
        let div = select(count, count + padded, kind == 2u);
        out = select(acc / f32(div), 0.0, div == 0u);
    }
    st(p[15] + i, out);
}
