//! Convolutions over a grid of geometries (kernel, stride, dilation, padding, groups, odd sizes so GEMM
//! panels wrap output rows and hit borders) against a float64 direct convolution, on the scalar and the
//! best kernel path, 1 and 2 threads.
use tern::ir::{Conv2d, Op, Unary};
use tern_tools::graph::ToolGraph;

fn rnd(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn case(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    p: [usize; 4],
    groups: usize,
    transposed: bool,
    post: bool,
    seed: &mut u64,
) {
    let mut g = ToolGraph::default();
    let x = g.add_tensor("x", &[n, c, h, w]);
    g.graph.inputs.push(x);
    let wshape = if transposed {
        [c, m / groups, k[0], k[1]]
    } else {
        [m, c / groups, k[0], k[1]]
    };
    let wv = rnd(wshape.iter().product(), seed);
    let bv = rnd(m, seed);
    let wt = g.add_const("w", &wshape, wv.clone());
    let bt = g.add_const("b", &[m], bv.clone());
    // a post-activation affine per output channel (format 6: inputs 3 and 4)
    let (ps, pt) = (rnd(m, seed), rnd(m, seed));
    let mut ins = vec![x, wt, bt];
    if post {
        ins.push(g.add_const("ps", &[m], ps.clone()));
        ins.push(g.add_const("pt", &[m], pt.clone()));
    }
    let geom = Conv2d {
        kernel: [k[0] as u32, k[1] as u32],
        strides: [s[0] as u32, s[1] as u32],
        dilations: [d[0] as u32, d[1] as u32],
        pads: [p[0] as u32, p[1] as u32, p[2] as u32, p[3] as u32],
        groups: groups as u32,
        output_padding: [0, 0],
    };
    let act = Some(Unary::LeakyRelu { alpha: 0.1 });
    let op = if transposed {
        Op::ConvTranspose { geom, act }
    } else {
        Op::Conv { geom, act }
    };
    let y = g.emit("conv", op, ins, &["y".into()], None).unwrap()[0];
    g.graph.outputs.push(y);
    let ys = g.shape(y);
    let (oh, ow) = (ys[2], ys[3]);
    let xv = rnd(n * c * h * w, seed);
    // float64 reference
    let (cg, mg) = (c / groups, m / groups);
    let mut want = vec![0f64; n * m * oh * ow];
    for b in 0..n {
        for mo in 0..m {
            let gi = mo / mg;
            for v in &mut want[(b * m + mo) * oh * ow..(b * m + mo + 1) * oh * ow] {
                *v = bv[mo] as f64;
            }
            for ci in 0..cg {
                let cin = gi * cg + ci;
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let wgt = if transposed {
                            wv[((cin * mg + (mo - gi * mg)) * k[0] + ky) * k[1] + kx]
                        } else {
                            wv[((mo * cg + ci) * k[0] + ky) * k[1] + kx]
                        } as f64;
                        if transposed {
                            for iy in 0..h {
                                for ix in 0..w {
                                    let oy = (iy * s[0] + ky * d[0]) as isize - p[0] as isize;
                                    let ox = (ix * s[1] + kx * d[1]) as isize - p[1] as isize;
                                    if oy >= 0
                                        && ox >= 0
                                        && (oy as usize) < oh
                                        && (ox as usize) < ow
                                    {
                                        want[(b * m + mo) * oh * ow
                                            + oy as usize * ow
                                            + ox as usize] +=
                                            wgt * xv[((b * c + cin) * h + iy) * w + ix] as f64;
                                    }
                                }
                            }
                        } else {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                                    let ix = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        want[(b * m + mo) * oh * ow + oy * ow + ox] += wgt
                                            * xv[((b * c + cin) * h + iy as usize) * w
                                                + ix as usize]
                                                as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    want.iter_mut()
        .for_each(|v| *v = if *v >= 0.0 { *v } else { 0.1 * *v });
    if post {
        for (i, v) in want.iter_mut().enumerate() {
            let mo = (i / (oh * ow)) % m;
            *v = *v * ps[mo] as f64 + pt[mo] as f64;
        }
    }
    let bytes = tern_tools::export::to_bytes(&g, vec![]).unwrap();
    let model = tern::Model::from_bytes(&bytes).unwrap();
    for threads in [1, 2] {
        let mut sess = tern::Session::new(&model, tern::SessionOptions { threads }).unwrap();
        let mut got = vec![0f32; want.len()];
        sess.run_into(&[&xv], &mut [&mut got]).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let kk = (cg * k[0] * k[1]) as f64;
            assert!(
                (*a as f64 - b).abs() <= 1e-5 * kk.sqrt() * (1.0 + b.abs()),
                "{} path, conv n{n} c{c} {h}x{w} m{m} k{k:?} s{s:?} d{d:?} p{p:?} g{groups} t{transposed}, {threads} thread(s): [{i}] {a} vs {b}",
                sess.isa()
            );
        }
    }
}

#[test]
fn conv_geometries_match_f64() {
    let mut seed = 42;
    let mut count = 0;
    for &(k, s, d) in &[
        ([1, 1], [1, 1], [1, 1]),
        ([3, 3], [1, 1], [1, 1]),
        ([3, 3], [2, 2], [1, 1]),
        ([5, 5], [1, 1], [1, 1]),
        ([3, 3], [1, 1], [2, 2]),
        ([1, 3], [2, 1], [1, 1]),
        ([3, 3], [3, 3], [1, 1]),
        ([3, 2], [1, 2], [1, 1]),
    ] {
        // (one-column and 2x3 inputs, and padding wider than the input: outputs that see only padding)
        for &(h, w) in &[(7, 9), (13, 21), (1, 17), (5, 53), (9, 1), (2, 3)] {
            for &pad in &[[0, 0, 0, 0], [1, 1, 1, 1], [2, 1, 0, 2], [4, 0, 3, 5]] {
                if (h + pad[0] + pad[2]) < d[0] * (k[0] - 1) + 1
                    || (w + pad[1] + pad[3]) < d[1] * (k[1] - 1) + 1
                {
                    continue;
                }
                for &(c, m, g) in &[(3, 8, 1), (8, 8, 8), (6, 9, 3), (17, 13, 1)] {
                    // every other case with a post-activation affine: each conv form applies it
                    let post = (count + count / 4) % 2 == 1;
                    case(1, c, h, w, m, k, s, d, pad, g, false, post, &mut seed);
                    count += 1;
                }
            }
        }
    }
    // batch 2 and transposed convolutions (the DB head's upsampling)
    case(
        2,
        5,
        6,
        7,
        4,
        [3, 3],
        [1, 1],
        [1, 1],
        [1, 1, 1, 1],
        1,
        false,
        true,
        &mut seed,
    );
    for &(k, s, p) in &[
        ([2, 2], [2, 2], [0, 0, 0, 0]),
        ([3, 3], [2, 2], [1, 1, 1, 1]),
        ([4, 4], [2, 2], [1, 1, 1, 1]),
    ] {
        case(1, 6, 5, 7, 4, k, s, [1, 1], p, 1, true, false, &mut seed);
        case(2, 6, 5, 7, 6, k, s, [1, 1], p, 2, true, false, &mut seed);
        count += 2;
    }
    println!("{count} conv geometries match");
}
