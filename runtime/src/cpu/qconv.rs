//! int8 convolution: weights int8 symmetric per output channel, activations int8 asymmetric per tensor (or
//! channel-scaled: a depthwise input, an output; see `ir::quant::QParams`), bias int32 at scale s_in·s_w,
//! requantization by the fixed-point multiplier. The input is unrolled (im2col) into int8 B panels whose padding is the input zero point (the
//! real value 0), and the shared [`super::qgemm`] kernels compute each group's product.
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
use super::kernels::DwPairs;
use super::qgemm::{self, QGemm, Requant};
use super::{share, Par, SyncPtr};
use crate::ir::quant::FixedMultiplier;
use crate::ir::Conv2d;
use alloc::vec::Vec;

/// A quantized convolution prepared once: packed weights and per-channel integer epilogue parameters.
pub struct QConv {
    /// The kernel the weights are packed for.
    g: QGemm,
    geom: Conv2d,
    /// Weight shape `[M, C/groups, kh, kw]`.
    wshape: [usize; 4],
    packed: Vec<i8>,
    group_stride: usize,
    /// Depthwise weights, `[channel][tap]` widened once (the direct path reads them per tap).
    dw: Vec<i32>,
    /// The same weights as the vector row kernels' pairs ([`pair_weights`]), `kh·⌈kw/2⌉` per channel.
    dw_pairs: Vec<i32>,
    /// A per-channel scale (1×1 depthwise, stride 1, no padding: a folded affine) as one 256-entry table
    /// per channel, built for the clamp in `tables.0`.
    tables: ((i32, i32), Vec<[i8; 256]>),
    /// Bias with `−zp_in·Σw` folded in (the GEMM path pads with zp_in, so the fold is exact).
    bias: Vec<i32>,
    /// The bias as given (the depthwise path subtracts zp_in per valid tap instead).
    bias_raw: Vec<i32>,
    pub(crate) mult: Vec<FixedMultiplier>,
    pub(crate) zp_in: i32,
    pub(crate) zp_out: i32,
}

/// Images per chunk of [`QConv::run_folded`] over `n` images of `npix` output pixels with `threads`
/// threads: `conv::fold_images` (at most `conv::FOLD_COLS` columns), and no more than a thread's share of
/// the batch, so every thread gets a chunk (silero VAD's 64 frames: its int8 convs had run on one thread).
fn fold_chunk(n: usize, npix: usize, threads: usize) -> usize {
    crate::cpu::ops::conv::fold_images(n, npix)
        .min(n.div_ceil(threads.max(1)))
        .max(1)
}

/// Whether a conv over `n` images of `npix` output pixels each runs as one GEMM over the batch
/// ([`QConv::run_folded`]): below [`crate::cpu::ops::conv::FOLD_PIXELS`] pixels an image's GEMM is a few
/// columns wide (silero VAD's 64 frames of 1-D convs 5, 4, 2 and 1 pixels wide: 4-40 GMAC/s image by
/// image).
fn folds_batch(n: usize, npix: usize) -> bool {
    n > 1 && npix < crate::cpu::ops::conv::FOLD_PIXELS
}

/// Symmetric per-output-channel int8 weights: `w ≈ scale[m]·q`, q in [−127, 127].
pub fn quantize_weights(w: &[f32], m: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / m.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(m);
    for ch in w.chunks(per.max(1)).take(m) {
        let amax = ch.iter().fold(0f32, |a, v| a.max(v.abs()));
        // a channel of (near-)zero weights (dead after BatchNorm folding) becomes exact zeros: its
        // scale would make the requantization multiplier unencodable and it contributes nothing
        let s = if amax > 1e-20 { amax / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            ch.iter()
                .map(|v| libm::roundf(v / s).clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// The requantization multipliers of a convolution's output channels, `s_in·s_w[i] / s_out`: one input
/// scale, or one per input channel (a channel-scaled depthwise input: with `mg` output channels per
/// group, channel i reads input channel i / mg alone), and one output scale or one per output channel (a
/// channel-scaled output, see `ir::quant`). `None` where one cannot be encoded.
pub fn multipliers(
    w_scales: &[f32],
    s_in: &[f32],
    s_out: &[f32],
    mg: usize,
) -> Option<Vec<FixedMultiplier>> {
    w_scales
        .iter()
        .enumerate()
        .map(|(i, &sw)| {
            let si = s_in.get(if s_in.len() == 1 { 0 } else { i / mg.max(1) })?;
            let so = s_out.get(i).or(s_out.first()).copied().unwrap_or(1.0);
            FixedMultiplier::from_real(*si as f64 * sw as f64 / so as f64)
        })
        .collect()
}

impl QConv {
    /// Prepares from int8 weights with per-channel scales, an optional int32 bias (at scale s_in·s_w), and
    /// the input/output (scale, zero point). `None` if a multiplier cannot be encoded.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        g: &QGemm,
        geom: Conv2d,
        w: &[i8],
        wshape: [usize; 4],
        w_scales: &[f32],
        bias: Option<&[i32]>,
        (s_in, zp_in): (&[f32], i32),
        (s_out, zp_out): (&[f32], i32),
    ) -> Option<QConv> {
        let g = &g.for_weights(w);
        let (m, groups) = (wshape[0], geom.groups as usize);
        let (mg, k) = (m / groups, wshape[1] * wshape[2] * wshape[3]);
        let mut packed = Vec::new();
        let mut group_stride = 0;
        for gi in 0..groups {
            let block = g.pack_a(mg, k, |i, p| w[(gi * mg + i) * k + p]);
            group_stride = block.len();
            packed.extend_from_slice(&block);
        }
        let bias_q: Vec<i32> = (0..m).map(|i| bias.map_or(0, |b| b[i])).collect();
        let bias = g.fold_bias(&bias_q, w, k, zp_in);
        let bias_raw = bias_q;
        let mult = multipliers(w_scales, s_in, s_out, mg)?;
        let dw = if wshape[1] == 1 && wshape[0] == groups {
            w.iter().map(|&v| v as i32).collect()
        } else {
            Vec::new()
        };
        let dw_pairs = pair_weights(&dw, wshape[3]);
        Some(QConv {
            g: *g,
            dw,
            dw_pairs,
            tables: ((0, 0), Vec::new()),
            geom,
            wshape,
            packed,
            group_stride,
            bias,
            bias_raw,
            mult,
            zp_in,
            zp_out,
        })
    }

    /// Group `gi`'s packed weight panels and its epilogue (`mg` output channels per group).
    fn group(&self, gi: usize, mg: usize, lo: i32, hi: i32) -> (&[i8], Requant<'_>) {
        let a = &self.packed[gi * self.group_stride..(gi + 1) * self.group_stride];
        let rq = Requant {
            bias: &self.bias[gi * mg..(gi + 1) * mg],
            mult: &self.mult[gi * mg..(gi + 1) * mg],
            zp_out: self.zp_out,
            lo,
            hi,
            fscale: &[],
            hswish: None,
        };
        (a, rq)
    }

    fn is_depthwise(&self) -> bool {
        // one input and one output channel per group: a direct kernel, not a 1-row GEMM
        self.wshape[1] == 1 && self.wshape[0] == self.geom.groups as usize
    }

    /// Output columns (pixels) per block: the unrolled block (K × cols bytes, plus its packed copy) stays
    /// in a core's L2 while every row panel of the weights passes over it; at least one block per thread.
    fn block_cols(&self, k: usize, npix: usize, threads: usize) -> usize {
        let nr = self.g.nr;
        let fit = ((96 * 1024) / k.max(1)).clamp(64, 4096);
        let per_thread = npix.div_ceil(threads.max(1));
        fit.min(per_thread).div_ceil(nr).max(1) * nr
    }

    /// The phase form of a convolution with a window or a stride: the group's input is padded once (zero
    /// point in the padding) and split into `sh·sw` stride phases (phase (py, px) holds padded rows
    /// `py, py+sh, ...` and columns `px, px+sw, ...`), and the output is computed `wq` columns wide, so
    /// every im2col row is one contiguous run of a phase: tap (ky, kx) of output (oy, ox) reads phase
    /// `(ky·dh % sh, kx·dw % sw)` at `(oy + ky·dh / sh)·wq + ox + kx·dw / sw`. No unrolled copy; the
    /// `wq − ow` extra columns per row are computed and dropped. Returns (phase rows, phase width), each
    /// phase with one spare row for the dropped columns' reads.
    fn shifted(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let g = &self.geom;
        let window = self.wshape[2] > 1 || self.wshape[3] > 1;
        (window || g.strides != [1, 1]).then(|| {
            let hp = h + (g.pads[0] + g.pads[2]) as usize;
            let wp = w + (g.pads[1] + g.pads[3]) as usize;
            (
                hp.div_ceil(g.strides[0] as usize) + 1,
                wp.div_ceil(g.strides[1] as usize),
            )
        })
    }

    /// Scratch bytes for input `xs` (NCHW) and output spatial size `oh×ow` with `threads` threads.
    pub fn scratch_bytes(&self, xs: [usize; 4], oh: usize, ow: usize, threads: usize) -> usize {
        if self.is_depthwise() {
            let gm = self.dw_geom(0, 0, oh, ow);
            return gm.scratch_bytes() * threads;
        }
        let [_, cg, kh, kw] = self.wshape;
        let k = cg * kh * kw;
        if folds_batch(xs[0], oh * ow) {
            let mg = self.wshape[0] / self.geom.groups as usize;
            let cols = fold_chunk(xs[0], oh * ow, threads) * oh * ow;
            return (k * cols + self.g.b_len(k, cols) + mg * cols) * threads;
        }
        if let Some((hq, wq)) = self.shifted(xs[2], xs[3]) {
            let mg = self.wshape[0] / self.geom.groups as usize;
            let cols = self.block_cols(k, oh * wq, threads);
            let phases = (self.geom.strides[0] * self.geom.strides[1]) as usize;
            let slack = (kw - 1) * self.geom.dilations[1] as usize + 1;
            // + the im2col rows' offsets (k usize, aligned)
            let taps = k * core::mem::size_of::<usize>() + core::mem::align_of::<usize>();
            return cg * phases * hq * wq
                + slack
                + taps
                + (self.g.b_len(k, cols) + mg * cols) * threads;
        }
        let cols = self.block_cols(k, oh * ow, threads);
        (k * cols + self.g.b_len(k, cols)) * threads
    }

    /// Runs on int8 NCHW `x` (shape `xs`) into `y` (shape `ys`), clamping to `[lo, hi]` (the fused
    /// activation in the output's integers). Per-channel affine tables, depthwise and windowed/strided
    /// convs (the phase form, `QConv::shifted`) take their own paths; otherwise threads split the output
    /// pixels in cache-sized column blocks: each unrolls its block (im2col with row runs; a 1×1 stride-1
    /// conv reads the input rows directly), interleaves it into B panels and runs every weight row panel
    /// over it.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        par: &Par,
        x: &[i8],
        xs: [usize; 4],
        y: &mut [i8],
        ys: [usize; 4],
        lo: i32,
        hi: i32,
        scratch: &mut [i8],
    ) {
        if !self.tables.1.is_empty() && self.tables.0 == (lo, hi) && xs[2..] == ys[2..] {
            let vector = crate::cpu::ops::quant::vector_lut(self.g.isa);
            let planes = xs[0] * xs[1];
            return crate::cpu::ops::quant::lut_planes(par, &self.tables.1, vector, x, y, planes);
        }
        if self.is_depthwise() {
            return self.run_depthwise(par, x, xs, y, ys, lo, hi, scratch);
        }
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (m, oh, ow) = (ys[1], ys[2], ys[3]);
        let groups = self.geom.groups as usize;
        let (cg, mg) = (c / groups, m / groups);
        let [_, _, kh, kw] = self.wshape;
        let k = cg * kh * kw;
        let g = &self.g;
        let geom = &self.geom;
        let direct = kh == 1
            && kw == 1
            && geom.strides == [1, 1]
            && geom.pads.iter().all(|&p| p == 0)
            && (oh, ow) == (h, w);
        let pad = self.zp_in.clamp(-128, 127) as i8;
        let npix = oh * ow;
        let threads = par.threads();
        if folds_batch(n, npix) {
            return self.run_folded(par, x, xs, y, ys, (lo, hi), scratch);
        }
        if let Some((hp, wp)) = self.shifted(h, w) {
            return self.run_shifted(par, x, xs, y, ys, (hp, wp), (lo, hi), scratch);
        }
        let cols = self.block_cols(k, npix, threads);
        let nblocks = npix.div_ceil(cols);
        let per = k * cols + g.b_len(k, cols);
        let sptr = SyncPtr(scratch.as_mut_ptr());
        let yptr = SyncPtr(y.as_mut_ptr());
        for b in 0..n {
            for gi in 0..groups {
                let chans = &x[(b * c + gi * cg) * h * w..(b * c + (gi + 1) * cg) * h * w];
                let (a, rq) = self.group(gi, mg, lo, hi);
                par.run(&|t| {
                    // SAFETY: each thread uses its own scratch slot.
                    let mine =
                        unsafe { core::slice::from_raw_parts_mut(sptr.get().add(t * per), per) };
                    let (plain, packed) = mine.split_at_mut(k * cols);
                    for blk in share(nblocks, t, threads) {
                        let j0 = blk * cols;
                        let nc = cols.min(npix - j0);
                        let bp = if direct {
                            pack_rows(
                                g,
                                k,
                                nc,
                                |p| &chans[p * npix + j0..p * npix + j0 + nc],
                                packed,
                            )
                        } else {
                            self.unroll(chans, (h, w), (oh, ow), j0, nc, pad, plain);
                            let plain = &*plain;
                            pack_rows(g, k, nc, |p| &plain[p * nc..(p + 1) * nc], packed)
                        };
                        // SAFETY: this thread owns columns j0..j0+nc of every output row of the group.
                        unsafe {
                            qgemm::qgemm_ptr(
                                g,
                                (mg, nc, k),
                                a,
                                bp,
                                yptr.get().add((b * m + gi * mg) * npix + j0),
                                npix,
                                &rq,
                            )
                        };
                    }
                });
            }
        }
    }

    /// [`QConv::run`] for a batch of small images ([`folds_batch`]) as one GEMM per group and chunk of
    /// images ([`fold_chunk`]: at most `conv::FOLD_COLS` columns, and a chunk per thread where the batch
    /// allows; threads split the chunks): their im2col side by side, one B packing, one product into
    /// scratch, each image's rows copied to `y`. The same integers as image by image.
    #[allow(clippy::too_many_arguments)]
    fn run_folded(
        &self,
        par: &Par,
        x: &[i8],
        xs: [usize; 4],
        y: &mut [i8],
        ys: [usize; 4],
        (lo, hi): (i32, i32),
        scratch: &mut [i8],
    ) {
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (m, oh, ow) = (ys[1], ys[2], ys[3]);
        let groups = self.geom.groups as usize;
        let (cg, mg) = (c / groups, m / groups);
        let [_, _, kh, kw] = self.wshape;
        let (k, npix) = (cg * kh * kw, oh * ow);
        let pad = self.zp_in.clamp(-128, 127) as i8;
        let threads = par.threads();
        let per = fold_chunk(n, npix, threads);
        let slot = {
            let cols = per * npix;
            k * cols + self.g.b_len(k, cols) + mg * cols
        };
        // one slot per worker: `scratch_bytes` sizes one per thread for the same chunking, so every
        // thread gets one (no fewer workers than slots ever run; none when there is no slot at all)
        let workers = (scratch.len() / slot.max(1)).min(threads);
        if workers == 0 {
            return;
        }
        let sptr = SyncPtr(scratch.as_mut_ptr());
        let yptr = SyncPtr(y.as_mut_ptr());
        par.run_on(workers, &|t| {
            // SAFETY: worker t < workers owns scratch slot t, which lies in scratch (workers · slot ≤
            // scratch.len()).
            let mine = unsafe { core::slice::from_raw_parts_mut(sptr.get().add(t * slot), slot) };
            for ci in share(n.div_ceil(per), t, workers) {
                let i0 = ci * per;
                let cnt = per.min(n - i0);
                let cols = cnt * npix;
                let (plain, rest) = mine.split_at_mut(k * cols);
                let (packed, rest) = rest.split_at_mut(self.g.b_len(k, cols));
                let out = &mut rest[..mg * cols];
                let chunk = &x[i0 * c * h * w..(i0 + cnt) * c * h * w];
                for gi in 0..groups {
                    let geom = &self.geom;
                    crate::cpu::ops::conv::im2col_batch(
                        chunk,
                        [cnt, c, h, w],
                        gi,
                        geom,
                        [oh, ow],
                        pad,
                        plain,
                    );
                    let (a, rq) = self.group(gi, mg, lo, hi);
                    let rows = &*plain;
                    let bp = pack_rows(
                        &self.g,
                        k,
                        cols,
                        |p| &rows[p * cols..(p + 1) * cols],
                        packed,
                    );
                    // SAFETY: `out` holds mg rows of `cols` bytes, this thread's alone.
                    unsafe {
                        qgemm::qgemm_ptr(&self.g, (mg, cols, k), a, bp, out.as_mut_ptr(), cols, &rq)
                    };
                    for img in 0..cnt {
                        for r in 0..mg {
                            // SAFETY: images i0..i0 + cnt are this thread's alone; the row lies in y.
                            let dst = unsafe {
                                core::slice::from_raw_parts_mut(
                                    yptr.get().add((((i0 + img) * m) + gi * mg + r) * npix),
                                    npix,
                                )
                            };
                            dst.copy_from_slice(&out[r * cols + img * npix..][..npix]);
                        }
                    }
                }
            }
        });
    }

    /// [`QConv::run`] in the phase form ([`QConv::shifted`]).
    #[allow(clippy::too_many_arguments)]
    fn run_shifted(
        &self,
        par: &Par,
        x: &[i8],
        xs: [usize; 4],
        y: &mut [i8],
        ys: [usize; 4],
        (hq, wq): (usize, usize),
        (lo, hi): (i32, i32),
        scratch: &mut [i8],
    ) {
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (m, oh, ow) = (ys[1], ys[2], ys[3]);
        let groups = self.geom.groups as usize;
        let (cg, mg) = (c / groups, m / groups);
        let [_, _, kh, kw] = self.wshape;
        let k = cg * kh * kw;
        let g = &self.g;
        let geom = &self.geom;
        let (sh, sw) = (geom.strides[0] as usize, geom.strides[1] as usize);
        let (dh, dw) = (geom.dilations[0] as usize, geom.dilations[1] as usize);
        let (pt, pl) = (geom.pads[0] as usize, geom.pads[1] as usize);
        let pad = self.zp_in.clamp(-128, 127) as i8;
        let threads = par.threads();
        let (npix, wide) = (oh * ow, oh * wq);
        let cols = self.block_cols(k, wide, threads);
        let nblocks = wide.div_ceil(cols);
        let phase = hq * wq;
        let per_ch = sh * sw * phase;
        let slack = (kw - 1) * dw + 1;
        let (phases, rest) = scratch.split_at_mut(cg * per_ch + slack);
        // where each im2col row (ci, ky, kx) starts in the phases, once per call (no divisions per row
        // and block)
        let (taps, rest) = {
            let align = rest.as_ptr().align_offset(core::mem::align_of::<usize>());
            let bytes = k * core::mem::size_of::<usize>() + core::mem::align_of::<usize>();
            let (t, rest) = rest.split_at_mut(bytes);
            // SAFETY: `bytes` holds k aligned usize past `align` (scratch_bytes); i8 has no invalid bits.
            let t = unsafe {
                core::slice::from_raw_parts_mut(t.as_mut_ptr().add(align) as *mut usize, k)
            };
            (t, rest)
        };
        let rows = crate::cpu::phase_taps(cg, wq, [kh, kw], [sh, sw], [dh, dw], (per_ch, phase));
        taps.iter_mut().zip(rows).for_each(|(t, o)| *t = o);
        let taps = &*taps;
        let per = g.b_len(k, cols) + mg * cols;
        let rptr = SyncPtr(rest.as_mut_ptr());
        let yptr = SyncPtr(y.as_mut_ptr());
        for b in 0..n {
            for gi in 0..groups {
                let chans = &x[(b * c + gi * cg) * h * w..(b * c + (gi + 1) * cg) * h * w];
                // the padded input of this group split into stride phases, channels over the threads
                let pptr = SyncPtr(phases.as_mut_ptr());
                let phase = crate::cpu::PhaseRows {
                    pl,
                    s: sw,
                    wq,
                    pitch: hq * wq,
                };
                par.run(&|t| {
                    for ch in share(cg, t, threads) {
                        // SAFETY: channel ch's phases belong to this thread.
                        let dst = unsafe {
                            core::slice::from_raw_parts_mut(pptr.get().add(ch * per_ch), per_ch)
                        };
                        dst.fill(pad);
                        let src = &chans[ch * h * w..(ch + 1) * h * w];
                        // padded row iy + pt is row rr of phase row py
                        let (mut py, mut rr) = (pt % sh, pt / sh);
                        for row in src.chunks_exact(w.max(1)) {
                            let at = (py * sw * hq + rr) * wq;
                            let dst = &mut dst[at..];
                            phase.write_i8(row, dst);
                            py += 1;
                            if py == sh {
                                (py, rr) = (0, rr + 1);
                            }
                        }
                    }
                });
                phases[cg * per_ch..].fill(pad);
                let phases = &*phases;
                let (a, rq) = self.group(gi, mg, lo, hi);
                par.run(&|t| {
                    // SAFETY: each thread uses its own scratch slot.
                    let mine =
                        unsafe { core::slice::from_raw_parts_mut(rptr.get().add(t * per), per) };
                    let (packed, tile) = mine.split_at_mut(g.b_len(k, cols));
                    for blk in share(nblocks, t, threads) {
                        let j0 = blk * cols;
                        let nc = cols.min(wide - j0);
                        // im2col row (ci, ky, kx) is a run of the tap's phase
                        let bp = pack_rows(
                            g,
                            k,
                            nc,
                            |p| &phases[taps[p] + j0..taps[p] + j0 + nc],
                            packed,
                        );
                        qgemm::qgemm(g, (mg, nc, k), a, bp, &mut tile[..mg * nc], nc, &rq);
                        // keep the columns inside the output, one output row's run at a time for
                        // every channel (the run's place divided out once, not once per channel); this
                        // thread owns pixels j0..j0+nc
                        let mut j = j0;
                        while j < j0 + nc {
                            let (oy, ox) = (j / wq, j % wq);
                            let run = (wq - ox).min(j0 + nc - j);
                            if ox < ow {
                                let len = run.min(ow - ox);
                                for r in 0..mg {
                                    let at = (b * m + gi * mg + r) * npix + oy * ow + ox;
                                    // SAFETY: pixels (oy, ox..ox+len) of row r belong to this thread.
                                    let dst = unsafe {
                                        core::slice::from_raw_parts_mut(yptr.get().add(at), len)
                                    };
                                    let from = r * nc + j - j0;
                                    crate::cpu::copy_run(dst, &tile[from..from + len]);
                                }
                            }
                            j += run;
                        }
                    }
                });
            }
        }
    }

    /// im2col for output pixels `j0..j0+nc` of one group: row p = (channel, ky, kx) of `plain` holds the
    /// input value each pixel sees through tap p, the input zero point where the tap falls in the padding.
    #[allow(clippy::too_many_arguments)]
    fn unroll(
        &self,
        chans: &[i8],
        (h, w): (usize, usize),
        (_oh, ow): (usize, usize),
        j0: usize,
        nc: usize,
        pad: i8,
        plain: &mut [i8],
    ) {
        let [_, cg, kh, kw] = self.wshape;
        let geom = &self.geom;
        let (sh, sw) = (geom.strides[0] as isize, geom.strides[1] as isize);
        let (dh, dw) = (geom.dilations[0] as isize, geom.dilations[1] as isize);
        let (pt, pl) = (geom.pads[0] as isize, geom.pads[1] as isize);
        for p in 0..cg * kh * kw {
            let (ch, ky, kx) = (p / (kh * kw), (p / kw) % kh, p % kw);
            let plane = &chans[ch * h * w..(ch + 1) * h * w];
            let dst = &mut plain[p * nc..(p + 1) * nc];
            // valid output columns for this tap: 0 <= ox*sw + kx*dw - pl < w
            let kxd = kx as isize * dw;
            let oxa = ((pl - kxd).max(0) as usize).div_ceil(sw as usize).min(ow);
            let oxb = if w as isize + pl > kxd {
                (((w as isize + pl - kxd - 1) / sw) as usize + 1).min(ow)
            } else {
                0
            }
            .max(oxa);
            let mut j = j0;
            while j < j0 + nc {
                let (oy, ox0) = (j / ow, j % ow);
                let ox1 = ow.min(ox0 + (j0 + nc - j));
                let iy = oy as isize * sh - pt + ky as isize * dh;
                let seg = &mut dst[j - j0..j - j0 + (ox1 - ox0)];
                if iy < 0 || iy >= h as isize {
                    seg.fill(pad);
                } else {
                    let row = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let (va, vb) = (oxa.clamp(ox0, ox1), oxb.clamp(ox0, ox1));
                    seg[..va - ox0].fill(pad);
                    seg[vb - ox0..].fill(pad);
                    let first = (va as isize * sw + kxd - pl) as usize;
                    let valid = &mut seg[va - ox0..vb - ox0];
                    if sw == 1 {
                        valid.copy_from_slice(&row[first..first + valid.len()]);
                    } else {
                        for (i, v) in valid.iter_mut().enumerate() {
                            *v = row[first + i * sw as usize];
                        }
                    }
                }
                j += ox1 - ox0;
            }
        }
    }

    /// For a per-channel affine (1×1 depthwise, stride 1, no padding): tabulates each channel's output for
    /// all 256 inputs with clamp `[lo, hi]` (the same integers as the arithmetic path, by construction);
    /// `run` then looks them up.
    pub fn build_tables(&mut self, lo: i32, hi: i32) {
        let g = &self.geom;
        if !(self.is_depthwise()
            && self.wshape[2] == 1
            && self.wshape[3] == 1
            && g.strides == [1, 1]
            && g.pads.iter().all(|&p| p == 0))
        {
            return;
        }
        let rq = Requant {
            bias: &self.bias_raw,
            mult: &self.mult,
            zp_out: self.zp_out,
            lo,
            hi,
            fscale: &[],
            hswish: None,
        };
        let (dw, zp) = (&self.dw, self.zp_in);
        let t = dw
            .iter()
            .enumerate()
            .map(|(ch, &wc)| core::array::from_fn(|i| rq.apply(ch, wc * (i as i32 - 128 - zp))))
            .collect();
        self.tables = ((lo, hi), t);
    }

    fn dw_geom(&self, h: usize, w: usize, oh: usize, ow: usize) -> DwGeom {
        let [_, _, kh, kw] = self.wshape;
        DwGeom::new(DwGeom {
            h,
            w,
            oh,
            ow,
            kh,
            kw,
            sh: self.geom.strides[0] as usize,
            sw: self.geom.strides[1] as usize,
            dh: self.geom.dilations[0] as usize,
            dw: self.geom.dilations[1] as usize,
            pt: self.geom.pads[0] as usize,
            pl: self.geom.pads[1] as usize,
            zp: self.zp_in,
            run: false,
        })
    }

    /// Depthwise: per channel, `w·(x − zp_in)` over the valid taps: on the vector paths row by row with the
    /// sums in registers and requantized there (AVX2, NEON), else accumulated into an i32 plane and
    /// requantized with the path's epilogue. Threads split the channels.
    #[allow(clippy::too_many_arguments)]
    fn run_depthwise(
        &self,
        par: &Par,
        x: &[i8],
        xs: [usize; 4],
        y: &mut [i8],
        ys: [usize; 4],
        lo: i32,
        hi: i32,
        scratch: &mut [i8],
    ) {
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (oh, ow) = (ys[2], ys[3]);
        let [_, _, kh, kw] = self.wshape;
        let gm = self.dw_geom(h, w, oh, ow);
        let threads = par.threads();
        let npix = oh * ow;
        let per = gm.scratch_bytes();
        let sptr = SyncPtr(scratch.as_mut_ptr());
        let yptr = SyncPtr(y.as_mut_ptr());
        let taps_n = kh * kw;
        let planes = n * c;
        let rq = Requant {
            bias: &self.bias_raw,
            mult: &self.mult,
            zp_out: self.zp_out,
            lo,
            hi,
            fscale: &[],
            hswish: None,
        };
        // the taps' offsets are the same for every plane: built once here, not per plane
        let taps = DwTaps::new(&gm);
        let npairs = kh * kw.div_ceil(2);
        par.run(&|t| {
            // SAFETY: each thread uses its own scratch slot and writes its own channels.
            let raw = unsafe { core::slice::from_raw_parts_mut(sptr.get().add(t * per), per) };
            let off = raw.as_ptr().align_offset(4);
            let (na, np) = gm.lens();
            // SAFETY: the slot holds 4-aligned room for na i32 then np i16 (scratch_bytes).
            let (acc, pp) = unsafe {
                let base = raw.as_mut_ptr().add(off);
                (
                    core::slice::from_raw_parts_mut(base as *mut i32, na),
                    core::slice::from_raw_parts_mut(base.add(na * 4) as *mut i16, np),
                )
            };
            // the padding, zeroed once for all this thread's planes (see build_plane)
            let (hn, wq) = gm.padded();
            pp[..gm.sw * hn * wq].fill(0);
            for pl_i in share(planes, t, threads) {
                let ch = pl_i % c;
                let src = &x[pl_i * h * w..(pl_i + 1) * h * w];
                let wts = &self.dw[ch * taps_n..(ch + 1) * taps_n];
                let pairs = self
                    .dw_pairs
                    .get(ch * npairs..(ch + 1) * npairs)
                    .unwrap_or(&[]);
                // SAFETY: plane pl_i belongs to this thread.
                let out =
                    unsafe { core::slice::from_raw_parts_mut(yptr.get().add(pl_i * npix), npix) };
                dw_plane(
                    self.g.isa,
                    src,
                    (wts, pairs),
                    (&rq, ch, out),
                    acc,
                    pp,
                    &gm,
                    &taps,
                );
            }
        });
    }
}

/// A depthwise plane's geometry.
struct DwGeom {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
    zp: i32,
    /// Whether the vector kernels run over the whole plane as one row (row stride 1 only: output
    /// `(oy, ox)` at `oy·wq + ox`, the `wq − ow` columns between rows computed and dropped) rather than
    /// row by row; set by [`DwGeom::new`]. (Only vector paths have the row kernels that read it.)
    #[cfg_attr(
        not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64")),
        allow(dead_code)
    )]
    run: bool,
}

impl DwGeom {
    /// `g` with [`DwGeom::run`] decided, counting 16-column vectors: a narrow plane wastes most of a row's
    /// last vector (20 columns: 32 lanes a row, 24 as one run), but the run computes every tap where the
    /// row form skips the taps on vertical padding, and its rows are copied out.
    fn new(g: DwGeom) -> DwGeom {
        let wq = g.padded().1;
        let inside = |oy: usize| {
            (0..g.kh)
                .filter(|ky| (g.pt..g.pt + g.h).contains(&(oy + ky * g.dh)))
                .count()
        };
        let rows = || (0..g.oh).map(inside).sum::<usize>() * g.ow.next_multiple_of(16);
        let run = g.kh * ((g.oh.max(1) - 1) * wq + g.ow).next_multiple_of(16) + g.oh * g.ow;
        DwGeom {
            run: g.sh == 1 && g.oh > 1 && run < rows(),
            ..g
        }
    }

    /// Rows of the padded plane the taps read, and the width of one column phase (with room for the
    /// widest tap offset).
    fn padded(&self) -> (usize, usize) {
        let hn = (self.oh.max(1) - 1) * self.sh + (self.kh - 1) * self.dh + 1;
        let wq = self.ow + (self.kw - 1) * self.dw / self.sw + 1;
        (hn, wq)
    }

    /// Row stride of the accumulator plane: with a row stride of 1 every tap is one long run over all
    /// output rows (the padding columns in between are computed and dropped).
    fn acc_stride(&self) -> usize {
        if self.sh == 1 {
            self.padded().1
        } else {
            self.ow
        }
    }

    /// (i32 accumulators, i16 padded-plane values) per thread.
    fn lens(&self) -> (usize, usize) {
        let (hn, wq) = self.padded();
        // + 32: the vector kernels' read slack past the last row
        (self.oh * self.acc_stride(), self.sw * hn * wq + wq + 32)
    }

    fn scratch_bytes(&self) -> usize {
        let (na, np) = self.lens();
        na * 4 + np * 2 + 64
    }
}

/// One depthwise plane: `acc = Σ_taps w·(x − zp)`, requantized with row `ch` of `rq` into `out` (`oh×ow`),
/// compiled for the widest vectors the path has. `wts` are the channel's taps, `pairs` the same as
/// [`pair_weights`] (read by the vector paths with `taps`).
#[allow(clippy::too_many_arguments)]
fn dw_plane(
    isa: crate::cpu::caps::Isa,
    src: &[i8],
    (wts, pairs): (&[i32], &[i32]),
    (rq, ch, out): (&Requant, usize, &mut [i8]),
    acc: &mut [i32],
    pp: &mut [i16],
    gm: &DwGeom,
    taps: &DwTaps,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(
        isa,
        crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
    ) {
        #[target_feature(enable = "avx2")]
        #[allow(clippy::too_many_arguments)]
        fn avx2(
            src: &[i8],
            (wts, pairs): (&[i32], &[i32]),
            (rq, ch, out): (&Requant, usize, &mut [i8]),
            acc: &mut [i32],
            pp: &mut [i16],
            gm: &DwGeom,
            taps: &DwTaps,
            wide: bool,
        ) -> bool {
            build_plane(src, pp, gm);
            // SAFETY (the row kernel): AVX2 is enabled here; `dw_rows` checks the reads' bound.
            let row = |pp: &[i16], ops: DwPairs, rq: &Requant, r, out: &mut [i8]| unsafe {
                crate::cpu::kernels::x86::dw_row_avx2(pp, ops, rq, r, out, wide)
            };
            dw_rows(pairs, (rq, ch, out), pp, acc, gm, taps, &row) || {
                dw_accumulate(wts, acc, pp, gm);
                false
            }
        }
        // the AVX-512 epilogue exactly where the GEMM has it (the VNNI path of an AVX-512 CPU)
        let wide = isa == crate::cpu::caps::Isa::AvxVnni && crate::cpu::kernels::x86::has_avx512();
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        if !unsafe {
            avx2(
                src,
                (wts, pairs),
                (rq, ch, &mut *out),
                acc,
                pp,
                gm,
                taps,
                wide,
            )
        } {
            dw_requant(isa, (rq, ch, out), acc, gm);
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if isa != crate::cpu::caps::Isa::Scalar {
        build_plane(src, pp, gm);
        // SAFETY (the row kernel): NEON is part of aarch64; `dw_rows` checks the reads' bound.
        let row = |pp: &[i16], ops: DwPairs, rq: &Requant, r, out: &mut [i8]| unsafe {
            crate::cpu::kernels::neon::dw_row_neon(pp, ops, rq, r, out)
        };
        if !dw_rows(pairs, (rq, ch, &mut *out), pp, acc, gm, taps, &row) {
            dw_accumulate(wts, acc, pp, gm);
            dw_requant(isa, (rq, ch, out), acc, gm);
        }
        return;
    }
    let _ = (pairs, taps);
    build_plane(src, pp, gm);
    dw_accumulate(wts, acc, pp, gm);
    dw_requant(isa, (rq, ch, out), acc, gm);
}

/// Requantizes the accumulator plane row by row with the path's epilogue.
fn dw_requant(
    isa: crate::cpu::caps::Isa,
    (rq, ch, out): (&Requant, usize, &mut [i8]),
    acc: &[i32],
    gm: &DwGeom,
) {
    let (stride, ow) = (gm.acc_stride(), gm.ow);
    for oy in 0..gm.oh {
        let a = &acc[oy * stride..oy * stride + ow];
        qgemm::requant_row(isa, rq, ch, a, &mut out[oy * ow..(oy + 1) * ow]);
    }
}

/// Most tap pairs per output row the vector depthwise kernel takes (a 11×11 window); larger windows use
/// the portable loop.
const DW_MAX_PAIRS: usize = 66;

/// Depthwise weights `[channel][ky][kx]` (`kw` per kernel row) as the vector row kernels' pairs
/// ([`DwPairs`]): per kernel row, `w[kx] | w[kx + 1] << 16` for kx = 0, 2, …; an odd row's last pair has
/// a zero second weight (its second offset repeats the first).
fn pair_weights(dw: &[i32], kw: usize) -> Vec<i32> {
    dw.chunks_exact(kw.max(1))
        .flat_map(|row| row.chunks(2))
        .map(|p| {
            let (wa, wb) = (p[0], p.get(1).copied().unwrap_or(0));
            ((wa as u32 & 0xffff) | ((wb as u32) << 16)) as i32
        })
        .collect()
}

/// A depthwise call's tap-pair offsets for the vector row kernels, the same for every plane: built once
/// per call (rebuilt per plane, they cost 4% of PP-OCR cls's int8 run on its 2×96 planes).
#[cfg_attr(
    not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64")),
    allow(dead_code)
)]
struct DwTaps {
    /// Per kernel row (`npr` pairs each), the pairs' offsets into the padded plane from output row 0's
    /// first input row; output row `oy` reads the same offsets `oy·sh` rows further down.
    offs: [(usize, usize); DW_MAX_PAIRS],
    npr: usize,
    /// Whether the vector kernels take the window (at most [`DW_MAX_PAIRS`] pairs, reads inside
    /// `need` plane values); the portable loop otherwise.
    ok: bool,
    /// Plane values (i16) and accumulators (i32) the vector form reads and writes.
    need: (usize, usize),
    /// The whole plane as one row ([`DwGeom::run`], where its reads fit the scratch).
    run: bool,
    /// The geometry's [`DwGeom::lens`] and padded size these offsets were built for (`dw_rows` reads
    /// only with a geometry that matches: its bound checks rest on them).
    built_for: ((usize, usize), (usize, usize)),
}

impl DwTaps {
    fn new(gm: &DwGeom) -> DwTaps {
        let &DwGeom {
            oh,
            ow,
            kh,
            kw,
            sw,
            dh,
            dw,
            ..
        } = gm;
        let (hn, wq) = gm.padded();
        let (na, np) = gm.lens();
        let npr = kw.div_ceil(2);
        let mut t = DwTaps {
            offs: [(0, 0); DW_MAX_PAIRS],
            npr,
            ok: false,
            need: (0, 0),
            run: false,
            built_for: (gm.lens(), gm.padded()),
        };
        let reach = (sw * hn - 1) * wq + (kw - 1) * dw / sw + ow.next_multiple_of(32);
        if kh * npr > DW_MAX_PAIRS || reach > np {
            return t;
        }
        let tap = |ky: usize, kx: usize| ((kx * dw) % sw * hn + ky * dh) * wq + (kx * dw) / sw;
        for ky in 0..kh {
            for (j, kx) in (0..kw).step_by(2).enumerate() {
                let oa = tap(ky, kx);
                let ob = if kx + 1 < kw { tap(ky, kx + 1) } else { oa };
                t.offs[ky * npr + j] = (oa, ob);
            }
        }
        let len = (oh.max(1) - 1) * wq + ow;
        let far = t.offs[..kh * npr]
            .iter()
            .map(|&(a, b)| a.max(b))
            .max()
            .unwrap_or(0);
        let run_pp = far + len.next_multiple_of(32);
        t.run = gm.run && run_pp <= np && len <= na * 4;
        t.need = if t.run {
            (reach.max(run_pp), len.div_ceil(4))
        } else {
            (reach, 0)
        };
        t.ok = true;
        t
    }
}

/// A depthwise row kernel: (plane from the row's first input row, tap pairs, epilogue, row of `rq`, out).
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
type DwRow<'a> = dyn Fn(&[i16], DwPairs, &Requant, usize, &mut [i8]) + 'a;

/// The vector depthwise plane: per output row, the taps whose input row is inside the image (taps on
/// vertical padding read zeros: skipped), paired (for `vpmaddwd` on x86), summed and requantized in
/// registers by `row`; or the whole plane as one row into `acc`'s bytes and copied out
/// ([`DwGeom::run`]). `false` (nothing written) where `taps` leaves the window to the portable loop or
/// the scratch is short of `taps.need`.
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
#[inline(always)]
fn dw_rows(
    pairs: &[i32],
    (rq, ch, out): (&Requant, usize, &mut [i8]),
    pp: &[i16],
    acc: &mut [i32],
    gm: &DwGeom,
    taps: &DwTaps,
    row: &DwRow,
) -> bool {
    let &DwGeom {
        h,
        oh,
        ow,
        kh,
        sh,
        dh,
        pt,
        ..
    } = gm;
    let npr = taps.npr;
    let n = kh * npr;
    if !taps.ok
        || taps.built_for != (gm.lens(), gm.padded())
        || pp.len() < taps.need.0
        || acc.len() < taps.need.1
        || pairs.len() < n
    {
        return false;
    }
    let wq = gm.padded().1;
    if taps.run {
        let len = (oh.max(1) - 1) * wq + ow;
        // SAFETY: the i32 scratch viewed as bytes (no alignment, every value valid), borrowed exclusively;
        // len ≤ 4·acc.len() (taps.need).
        let run = unsafe { core::slice::from_raw_parts_mut(acc.as_mut_ptr().cast::<i8>(), len) };
        row(pp, (&pairs[..n], &taps.offs[..n]), rq, ch, run);
        for (o, r) in out.chunks_exact_mut(ow).zip(run.chunks(wq)) {
            crate::cpu::copy_run(o, &r[..ow]);
        }
        return true;
    }
    for oy in 0..oh {
        let inside = |ky: &usize| (pt..pt + h).contains(&(oy * sh + ky * dh));
        let Some(lo) = (0..kh).find(inside) else {
            // every tap on padding: the bias alone (no taps, nothing read)
            row(pp, (&[], &[]), rq, ch, &mut out[oy * ow..(oy + 1) * ow]);
            continue;
        };
        let hi = (lo..kh).take_while(|ky| inside(ky)).last().unwrap_or(lo);
        let sel = lo * npr..(hi + 1) * npr;
        // every read ends below the reach checked by DwTaps::new (≤ pp.len())
        row(
            &pp[oy * sh * wq..],
            (&pairs[sel.clone()], &taps.offs[sel]),
            rq,
            ch,
            &mut out[oy * ow..(oy + 1) * ow],
        );
    }
    true
}

/// The padded plane `x − zp` (zero in the padding, so taps need no bounds logic) is split into `sw` column
/// phases, so every tap reads a contiguous run: tap (ky, kx) of output (oy, ox) reads phase
/// `(kx·dw) % sw`, row `oy·sh + ky·dh`, column `ox + (kx·dw) / sw`. Only the cells inside the image are
/// written: `pp` must hold zeros everywhere else, which every plane of a layer leaves as it found them
/// (the same cells each time), so the caller zeroes `pp` once per layer, not per plane (on 2-row planes
/// under a 5×5 window the fill was most of the plane's setup).
#[inline(always)]
fn build_plane(src: &[i8], pp: &mut [i16], gm: &DwGeom) {
    let &DwGeom {
        w, sw, pt, pl, zp, ..
    } = gm;
    let (hn, wq) = gm.padded();
    let at = crate::cpu::PhaseRows {
        pl,
        s: sw,
        wq,
        pitch: hn * wq,
    };
    // (w.max(1): a zero-width input has no rows to copy, and chunks_exact takes no 0)
    for (iy, row) in src
        .chunks_exact(w.max(1))
        .enumerate()
        .take(hn.saturating_sub(pt))
    {
        let yy = iy + pt;
        let f = |v: i8| v as i16 - zp as i16;
        at.write(row, None, f, &mut pp[yy * wq..]);
    }
}

/// The portable accumulation over a built plane (the oracle for the vector kernels): with a row stride
/// of 1, every tap is one long run over all output rows.
#[inline(always)]
fn dw_accumulate(wts: &[i32], acc: &mut [i32], pp: &[i16], gm: &DwGeom) {
    let &DwGeom {
        oh,
        ow,
        kh,
        kw,
        sh,
        sw,
        dh,
        dw,
        ..
    } = gm;
    let (hn, wq) = gm.padded();
    let stride = gm.acc_stride();
    let rows = if sh == 1 { 1 } else { oh };
    let len = if sh == 1 { oh * stride } else { ow };
    for oy in 0..rows {
        let a = &mut acc[oy * stride..oy * stride + len];
        a.fill(0);
        for ky in 0..kh {
            for kx in 0..kw {
                let wv = wts[ky * kw + kx];
                let (q, o) = ((kx * dw) % sw, (kx * dw) / sw);
                let base = (q * hn + oy * sh + ky * dh) * wq + o;
                for (d, &v) in a.iter_mut().zip(&pp[base..base + len]) {
                    *d += wv * v as i32;
                }
            }
        }
    }
}

/// Interleaves `k` rows of `nc` bytes (`row(p)`) into B panels for `g` (`panel[kb][col][4]`, zero padded):
/// four rows at a time, sixteen columns at a time with byte unpacks (x86) or `st4` (aarch64).
fn pack_rows<'a, 'o>(
    g: &QGemm,
    k: usize,
    nc: usize,
    row: impl Fn(usize) -> &'a [i8],
    out: &'o mut [i8],
) -> &'o [i8] {
    static ZEROS: [i8; 4096] = [0; 4096];
    let (kb, nr) = (qgemm::k_blocks(k), g.nr);
    let out = &mut out[..g.b_len(k, nc)];
    let panel = kb * nr * 4;
    let full16 = nc / 16 * 16;
    // panel and place of column j by shifts: nr is a power of two, and a division per 16 columns
    // showed in profiles
    debug_assert!(nr.is_power_of_two());
    let (shift, mask) = (nr.trailing_zeros(), nr - 1);
    let at = |j: usize| (j >> shift) * panel + (j & mask) * 4;
    for blk in 0..kb {
        let r: [&[i8]; 4] = core::array::from_fn(|q| {
            let p = blk * 4 + q;
            if p < k {
                row(p)
            } else {
                &ZEROS[..nc]
            }
        });
        let end = nc.div_ceil(nr) * nr;
        // 16 columns at j from `rows`: all or half of a panel of 16 or 32 (interleaved in place), or two
        // of 8 (fixed-size copies), the panels past `end` left alone
        #[inline(always)]
        fn sixteen(
            (j, end, nr, dst): (usize, usize, usize, impl Fn(usize) -> usize),
            rows: [&[i8]; 4],
            out: &mut [i8],
        ) {
            if nr >= 16 {
                let dst = dst(j);
                let quad: &mut [i8; 64] = (&mut out[dst..dst + 64]).try_into().unwrap();
                interleave16(rows, quad);
            } else {
                let mut quad = [0i8; 64];
                interleave16(rows, &mut quad);
                for half in 0..16 / nr {
                    let jj = j + half * nr;
                    if jj >= end {
                        break;
                    }
                    let dst = dst(jj);
                    if nr == 8 {
                        out[dst..dst + 32].copy_from_slice(&quad[half * 32..half * 32 + 32]);
                    } else {
                        out[dst..dst + nr * 4]
                            .copy_from_slice(&quad[half * nr * 4..(half + 1) * nr * 4]);
                    }
                }
            }
        }
        let dst = |j: usize| at(j) + blk * nr * 4;
        let mut j = 0;
        while j < full16 {
            let rows = [&r[0][j..], &r[1][j..], &r[2][j..], &r[3][j..]];
            sixteen((j, end, nr, dst), rows, out);
            j += 16;
        }
        if j < nc {
            // the last columns through the same interleave, zero padded to sixteen (a byte loop per
            // column took a few % of an int8 YOLOv8n run in its shifted convs' chunk tails)
            let mut tails = [[0i8; 16]; 4];
            for (t, row) in tails.iter_mut().zip(&r) {
                t[..nc - j].copy_from_slice(&row[j..nc]);
            }
            sixteen(
                (j, end, nr, dst),
                [&tails[0], &tails[1], &tails[2], &tails[3]],
                out,
            );
            j += 16;
        }
        // zero columns up to the panel's end
        while j < end {
            out[dst(j)..dst(j) + 4].fill(0);
            j += 1;
        }
    }
    out
}

/// `out[4c + q] = r[q][c]` for 16 columns.
#[inline(always)]
fn interleave16(r: [&[i8]; 4], out: &mut [i8; 64]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        assert!(r.iter().all(|x| x.len() >= 16));
        // SAFETY: SSE2 is part of x86-64; 16 bytes readable per row (asserted), 64 writable.
        unsafe {
            let l = |x: &[i8]| _mm_loadu_si128(x.as_ptr() as *const __m128i);
            let (r0, r1, r2, r3) = (l(r[0]), l(r[1]), l(r[2]), l(r[3]));
            let (a, b) = (_mm_unpacklo_epi8(r0, r1), _mm_unpackhi_epi8(r0, r1));
            let (c, d) = (_mm_unpacklo_epi8(r2, r3), _mm_unpackhi_epi8(r2, r3));
            let o = out.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(a, c));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(a, c));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(b, d));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(b, d));
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use core::arch::aarch64::*;
        assert!(r.iter().all(|x| x.len() >= 16));
        // SAFETY: NEON is part of aarch64; 16 bytes readable per row (asserted), 64 writable.
        unsafe {
            let v = int8x16x4_t(
                vld1q_s8(r[0].as_ptr()),
                vld1q_s8(r[1].as_ptr()),
                vld1q_s8(r[2].as_ptr()),
                vld1q_s8(r[3].as_ptr()),
            );
            vst4q_s8(out.as_mut_ptr(), v);
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    for c in 0..16 {
        for q in 0..4 {
            out[4 * c + q] = r[q][c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::caps;
    use crate::ir::quant::quantize_bias;
    use alloc::vec;

    fn floats(n: usize, seed: &mut u64, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((*seed >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    }

    /// Every depthwise path's int8 outputs equal the portable loop's over windows, strides, dilations,
    /// paddings and widths with 16-column tails (vertical padding taps skipped by the vector kernel).
    #[test]
    fn depthwise_paths_equal_the_portable_loop() {
        let (mut seed, mut cases, mut runs) = (5, 0, 0);
        for &(h, w) in &[
            (2usize, 96usize),
            (3, 17),
            (9, 33),
            (1, 5),
            (6, 40),
            (20, 20),
            (4, 1),
        ] {
            for &(kh, kw) in &[(3usize, 3usize), (5, 5), (1, 7), (3, 1), (7, 9)] {
                for &(sh, sw) in &[(1usize, 1usize), (2, 1), (2, 2), (1, 3)] {
                    for &(dh, dw) in &[(1usize, 1usize), (2, 2)] {
                        let (pt, pl) = ((kh - 1) * dh / 2, (kw - 1) * dw / 2);
                        let (eh, ew) = (h + 2 * pt, w + 2 * pl);
                        if eh < (kh - 1) * dh + 1 || ew < (kw - 1) * dw + 1 {
                            continue;
                        }
                        let oh = (eh - (kh - 1) * dh - 1) / sh + 1;
                        let ow = (ew - (kw - 1) * dw - 1) / sw + 1;
                        let gm = DwGeom::new(DwGeom {
                            h,
                            w,
                            oh,
                            ow,
                            kh,
                            kw,
                            sh,
                            sw,
                            dh,
                            dw,
                            pt,
                            pl,
                            zp: -7,
                            run: false,
                        });
                        let src: Vec<i8> = floats(h * w, &mut seed, -128.0, 127.9)
                            .iter()
                            .map(|&v| v as i8)
                            .collect();
                        // the extremes included: |w·(x − zp)| pairs at their largest
                        let mut wts: Vec<i32> = floats(kh * kw, &mut seed, -128.0, 127.9)
                            .iter()
                            .map(|&v| v as i32)
                            .collect();
                        wts[0] = -128;
                        let (na, np) = gm.lens();
                        // a multiplier that keeps sums of a few taps in range, and one bias per case
                        let mult = [FixedMultiplier::from_real(1.0 / (700.0 * kh as f64)).unwrap()];
                        // the i32 ends on two plane heights: the saturating bias add of every epilogue
                        let bias = [match h {
                            1 => i32::MAX - 3,
                            3 => i32::MIN + 3,
                            _ => (h as i32 - 4) * 1111,
                        }];
                        let rq = Requant {
                            bias: &bias,
                            mult: &mult,
                            zp_out: 5,
                            lo: -128,
                            hi: 127,
                            fscale: &[],
                            hswish: None,
                        };
                        let (pairs, taps) = (pair_weights(&wts, kw), DwTaps::new(&gm));
                        let run = |isa| {
                            let (mut acc, mut pp) = (vec![0i32; na], vec![0i16; np]);
                            let mut out = vec![0i8; oh * ow];
                            dw_plane(
                                isa,
                                &src,
                                (&wts, &pairs),
                                (&rq, 0, &mut out),
                                &mut acc,
                                &mut pp,
                                &gm,
                                &taps,
                            );
                            out
                        };
                        let want = run(caps::Isa::Scalar);
                        for isa in caps::available() {
                            assert_eq!(
                                run(isa),
                                want,
                                "{} h{h} w{w} k{kh}x{kw} s{sh}x{sw} d{dh}x{dw}",
                                isa.name()
                            );
                        }
                        cases += 1;
                        runs += gm.run as usize;
                    }
                }
            }
        }
        assert!(cases > 100, "{cases}");
        // both vector forms are compared: whole-plane runs and row by row
        assert!(runs > 10 && cases - runs > 10, "{runs} of {cases}");
    }

    /// A batch of more one-pixel images than one batch GEMM takes (`conv::FOLD_COLS` columns), with a
    /// K that is not a multiple of 4 (B's padding rows), runs in chunks (on 1 and 2 threads, the same
    /// integers) and equals the images run alone.
    #[test]
    fn a_large_folded_batch_runs_in_chunks() {
        let (c, m, n) = (3usize, 5usize, crate::cpu::ops::conv::FOLD_COLS + 7);
        let mut seed = 21;
        let (wq, ws) = quantize_weights(&floats(m * c, &mut seed, -0.5, 0.5), m);
        let xq: Vec<i8> = floats(n * c, &mut seed, -128.0, 127.9)
            .iter()
            .map(|&v| v as i8)
            .collect();
        let geom = Conv2d::pointwise(1);
        let g = qgemm::qgemm_for(caps::detect());
        let q = QConv::new(
            &g,
            geom,
            &wq,
            [m, c, 1, 1],
            &ws,
            None,
            (&[0.02], -3),
            (&[0.05], 2),
        )
        .unwrap();
        let pool = crate::cpu::pool::Pool::new(2).unwrap();
        let mut ys = vec![];
        for par in [Par::single(), Par { pool: Some(&pool) }] {
            // (2 threads: a chunk per thread)
            let mut y = vec![0i8; n * m];
            let threads = par.threads();
            let mut sc = vec![0i8; q.scratch_bytes([n, c, 1, 1], 1, 1, threads)];
            q.run(
                &par,
                &xq,
                [n, c, 1, 1],
                &mut y,
                [n, m, 1, 1],
                -128,
                127,
                &mut sc,
            );
            ys.push(y);
        }
        assert_eq!(ys[0], ys[1], "1 and 2 threads");
        let (y, par) = (&ys[0], Par::single());
        let mut sc1 = vec![0i8; q.scratch_bytes([1, c, 1, 1], 1, 1, 1)];
        for (i, img) in xq.chunks(c).enumerate() {
            let mut y1 = vec![0i8; m];
            q.run(
                &par,
                img,
                [1, c, 1, 1],
                &mut y1,
                [1, m, 1, 1],
                -128,
                127,
                &mut sc1,
            );
            assert_eq!(&y[i * m..(i + 1) * m], &y1[..], "image {i}");
        }
    }

    /// The int8 conv equals an independent integer reference exactly (every kernel path), and stays within
    /// one output step of the float convolution of the dequantized operands.
    #[test]
    fn qconv_is_exact_and_close_to_float() {
        let mut seed = 9;
        for &(c, m, groups, k, s, p, h, w) in &[
            (
                3usize, 8usize, 1usize, 3usize, 1usize, 1usize, 9usize, 11usize,
            ),
            (8, 8, 8, 3, 2, 1, 10, 7),
            (5, 5, 5, 5, 1, 2, 9, 60),
            (4, 4, 4, 3, 1, 1, 3, 2),
            (6, 5, 1, 3, 2, 1, 3, 3),
            (6, 9, 3, 1, 1, 0, 5, 13),
            (5, 7, 1, 5, 2, 2, 12, 12),
            (6, 6, 6, 1, 1, 0, 7, 40),
            (16, 24, 1, 1, 1, 0, 20, 30),
            (7, 7, 7, 3, 2, 1, 21, 50),
            (12, 20, 1, 3, 1, 1, 17, 41),
            (8, 12, 1, 1, 2, 0, 9, 10),
            (9, 16, 1, 3, 2, 1, 33, 35),
            // one input column at column stride 3, padding wider than the input (dense and depthwise)
            (4, 6, 1, 3, 3, 2, 5, 1),
            (5, 5, 5, 3, 3, 3, 4, 1),
        ] {
            let geom = Conv2d {
                kernel: [k as u32; 2],
                strides: [s as u32; 2],
                dilations: [1, 1],
                pads: [p as u32; 4],
                groups: groups as u32,
                output_padding: [0, 0],
            };
            let (cg, mg) = (c / groups, m / groups);
            let wf = floats(m * cg * k * k, &mut seed, -0.5, 0.5);
            let bf = floats(m, &mut seed, -1.0, 1.0);
            let (wq, ws) = quantize_weights(&wf, m);
            let xf = floats(c * h * w, &mut seed, -1.0, 3.0);
            // range [-1, 3); a depthwise input is channel-scaled (channels 2x and 4x finer in turn, see
            // ir::quant::QParams): each output channel takes its input channel's scale
            let zp_in = -128 + 64;
            let s_ins: Vec<f32> = if cg == 1 {
                (0..c)
                    .map(|ci| 4.0 / 255.0 / (1 << (ci % 3)) as f32)
                    .collect()
            } else {
                vec![4.0 / 255.0]
            };
            let s_of = |ci: usize| s_ins[if s_ins.len() == 1 { 0 } else { ci }];
            let xq: Vec<i8> = xf
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (libm::roundf(v / s_of(i / (h * w))) as i32 + zp_in).clamp(-128, 127) as i8
                })
                .collect();
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let (s_out, zp_out) = (0.05f32, 3);
            let bq: Vec<i32> = (0..m)
                .map(|mo| quantize_bias(bf[mo], s_of(mo / mg * cg) as f64 * ws[mo] as f64))
                .collect();

            // independent integer reference, straight from the definition
            let mut want = vec![0i8; m * oh * ow];
            let mut real = vec![0f64; m * oh * ow];
            for mo in 0..m {
                let gi = mo / mg;
                let s_in = s_of(gi * cg);
                let acc_scale = s_in as f64 * ws[mo] as f64;
                let bq = libm::round(bf[mo] as f64 / acc_scale) as i32; // independent of quantize_bias
                let mult = FixedMultiplier::from_real(acc_scale / s_out as f64).unwrap();
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bq;
                        let mut r = bf[mo] as f64;
                        for ci in 0..cg {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        (oy * s + ky) as isize - p as isize,
                                        (ox * s + kx) as isize - p as isize,
                                    );
                                    let wv = wq[((mo * cg + ci) * k + ky) * k + kx] as i32;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        let xv = xq
                                            [((gi * cg + ci) * h + iy as usize) * w + ix as usize]
                                            as i32;
                                        acc += wv * (xv - zp_in);
                                        r += wv as f64
                                            * ws[mo] as f64
                                            * (xv - zp_in) as f64
                                            * s_in as f64;
                                    }
                                }
                            }
                        }
                        let i = (mo * oh + oy) * ow + ox;
                        want[i] = (mult.apply(acc) + zp_out).clamp(-128, 127) as i8;
                        real[i] = r;
                    }
                }
            }
            let pool = crate::cpu::pool::Pool::new(2).unwrap();
            for (isa, threads) in caps::available().into_iter().flat_map(|i| [(i, 1), (i, 2)]) {
                let g = qgemm::qgemm_for(isa);
                let par = if threads == 1 {
                    Par::single()
                } else {
                    Par { pool: Some(&pool) }
                };
                let mut y = vec![0i8; m * oh * ow];
                let mut q = QConv::new(
                    &g,
                    geom.clone(),
                    &wq,
                    [m, cg, k, k],
                    &ws,
                    Some(&bq),
                    (&s_ins, zp_in),
                    (&[s_out], zp_out),
                )
                .unwrap();
                if threads == 2 {
                    // the table path of a per-channel affine (a no-op for other shapes)
                    q.build_tables(-128, 127);
                }
                let mut scratch = vec![0i8; q.scratch_bytes([1, c, h, w], oh, ow, threads)];
                q.run(
                    &par,
                    &xq,
                    [1, c, h, w],
                    &mut y,
                    [1, m, oh, ow],
                    -128,
                    127,
                    &mut scratch,
                );
                assert_eq!(
                    y, want,
                    "{} {threads}t c{c} m{m} g{groups} k{k} s{s}",
                    g.name
                );
                // three different images at once (small ones take the batch GEMM, `folds_batch`)
                // equal the three run alone
                let imgs: Vec<Vec<i8>> = (0..3)
                    .map(|i| xq.iter().map(|&v| v.wrapping_add(37 * i as i8)).collect())
                    .collect();
                let mut alone = Vec::new();
                for img in &imgs {
                    let mut y1 = vec![0i8; m * oh * ow];
                    let mut sc = vec![0i8; q.scratch_bytes([1, c, h, w], oh, ow, threads)];
                    let (xs1, ys1) = ([1, c, h, w], [1, m, oh, ow]);
                    q.run(&par, img, xs1, &mut y1, ys1, -128, 127, &mut sc);
                    alone.extend(y1);
                }
                let mut y3 = vec![0i8; 3 * m * oh * ow];
                let mut sc = vec![0i8; q.scratch_bytes([3, c, h, w], oh, ow, threads)];
                let (xs3, ys3) = ([3, c, h, w], [3, m, oh, ow]);
                q.run(&par, &imgs.concat(), xs3, &mut y3, ys3, -128, 127, &mut sc);
                assert_eq!(
                    y3, alone,
                    "batch of 3: {} c{c} m{m} g{groups} k{k} s{s}",
                    g.name
                );
            }
            for (i, (&yq, &r)) in want.iter().zip(&real).enumerate() {
                let deq = (yq as i32 - zp_out) as f64 * s_out as f64;
                let clipped = r.clamp(
                    (-128 - zp_out) as f64 * s_out as f64,
                    (127 - zp_out) as f64 * s_out as f64,
                );
                assert!(
                    (deq - clipped).abs() <= s_out as f64 * 0.5 + 1e-3,
                    "[{i}] {deq} vs float {r}"
                );
            }
        }
    }
}
