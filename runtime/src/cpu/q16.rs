//! The 16-bit activation engine (format 10): int16 activations (symmetric per tensor, zero point 0) with
//! int8 weights and i32 sums, the "16x8" scheme. Its ops are `Op::Q16*`, plus Quantize/Dequantize, pooling
//! and data movement on int16 tensors. Every result is an exact integer rule (`crate::ir::quant`), so the
//! scalar loops here are the oracle and the vector tiles equal them bit for bit.
//!
//! Convolution and matmul accumulate `w·x` products (|w| ≤ 128, |x| ≤ 2^15) in i32: the loader proves
//! every output row's `2^15·Σ|w| + |bias|` below 2^31 (`crate::ir::quant::acc16_fits`), so no partial sum
//! in any order overflows. The GEMM reads its right operand (activations, im2col rows) row-major in place
//! and its left one (weights widened to i16) packed once in 4-row panels of k-pairs: AVX2 multiplies a
//! pair of rows with `vpmaddwd` (16 MACs an instruction), NEON a row with `smlal` by lane.
use super::caps::Isa;
use super::ops::layout::{self, GatherMaps};
use super::ops::quant::reborrow;
use super::ops::{broadcast_strides, pool, View, ViewMut};
use super::qgemm::Requant;
use super::{share, Par, SyncPtr};
use crate::ir::quant::{
    add16, add16_params, dequantize_i16, f32_scale, lut16, quantize_f32_i16, requant_f32,
    unary16_params, FixedMultiplier, LUT16_MAX_SHIFT, LUT16_MIN_SHIFT,
};
use crate::ir::{BinOp, Conv2d, DType, Node, Op, PadMode, PoolKind, ResizeMode};
use crate::model::Model;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

/// Rows of a packed weight panel.
pub const MR: usize = 4;
/// Columns of a vector tile.
pub const NR: usize = 16;

/// Taps (kernel rows inside the input × tap pairs) the padded depthwise path takes per output row (more
/// go the row-by-row way).
const MAX_DW_TAPS: usize = 64;

/// One output row's depthwise taps on the padded path: where each tap pair's column pairs start, and its
/// two weights as one dword.
type DwTaps = [(*const i32, i32); MAX_DW_TAPS];

/// A thread's depthwise scratch: the sums, the column pairs and the padded plane (`wp` wide; the last
/// two empty off the padded path), and the taps of the row at hand.
type DwScratch<'a> = (
    &'a mut [i32],
    &'a mut [i32],
    &'a mut [i16],
    usize,
    &'a mut DwTaps,
);

/// Outputs below this many elements run on one thread (waking the pool costs more).
const PAR_MIN: usize = 1 << 14;

/// Whether node `n` runs on this engine: a `Q16*` op, a Quantize to or Dequantize from int16, or pooling
/// and data movement on int16 tensors.
pub fn is_q16(model: &Model, n: &Node) -> bool {
    let dt = |t: u32| model.graph.tensors[t as usize].dtype;
    match n.op {
        Op::Q16Conv { .. }
        | Op::Q16ConvAct { .. }
        | Op::Q16MatMul { .. }
        | Op::Q16Binary { .. }
        | Op::Q16Lut
        | Op::Q16Unary(_)
        | Op::Requantize => true,
        Op::Quantize => dt(n.outputs[0]) == DType::I16,
        Op::Dequantize => dt(n.inputs[0]) == DType::I16,
        _ => n.outputs.first().is_some_and(|&y| dt(y) == DType::I16),
    }
}

/// An int16 tensor's scale (the loader proved it one scale, zero point 0).
fn scale(model: &Model, t: u32) -> f32 {
    model.graph.tensors[t as usize]
        .quant
        .as_ref()
        .map_or(1.0, |q| q.scale[0])
}

/// Whether the model's 16-bit Conv, MatMul and Mul requantize in f32 (format 12 on).
fn f32_requant(model: &Model) -> bool {
    model.format_version >= crate::ir::quant::REQUANT_F32_FORMAT
}

fn mult(real: f64) -> FixedMultiplier {
    // the loader proved every multiplier of a valid model encodable
    FixedMultiplier::from_real(real).unwrap_or(FixedMultiplier { mult: 0, shift: 0 })
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A 16-bit function table from its stored form: the first entry, then each entry's difference from the
/// one before (wrapping int16 arithmetic; `crate::ir::Op::Q16Lut`), summed back.
pub fn table_values(bytes: &[u8]) -> Vec<i16> {
    let mut acc = 0i16;
    i16s(bytes)
        .into_iter()
        .map(|d| {
            acc = acc.wrapping_add(d);
            acc
        })
        .collect()
}

/// A table's stored form ([`table_values`] inverted).
pub fn table_deltas(values: &[i16]) -> Vec<i16> {
    let mut prev = 0i16;
    values
        .iter()
        .map(|&v| {
            let d = v.wrapping_sub(prev);
            prev = v;
            d
        })
        .collect()
}

fn i16s(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The requantization of a conv's or matmul's rows: bias, multiplier, clamp (zero point 0).
pub struct Rows {
    /// Bias per output row (zeros without one).
    pub bias: Vec<i32>,
    /// Multiplier per output row.
    pub mult: Vec<FixedMultiplier>,
    /// Format 12 on: the f32 multiplier per output row ([`crate::ir::quant::requant_f32`], used instead
    /// of `mult`); empty before.
    pub fscale: Vec<f32>,
    /// A fused HardSwish's constant ([`Op::Q16ConvAct`]; `fscale` then scales the sums to real values).
    pub hswish: Option<f32>,
    /// Clamp.
    pub lo: i32,
    /// Upper clamp.
    pub hi: i32,
}

impl Rows {
    /// The epilogue view from row `r0` on.
    pub fn requant(&self, r0: usize) -> Requant<'_> {
        Requant {
            bias: &self.bias[r0.min(self.bias.len())..],
            mult: &self.mult[r0.min(self.mult.len())..],
            zp_out: 0,
            lo: self.lo,
            hi: self.hi,
            fscale: self.fscale.get(r0..).unwrap_or(&[]),
            hswish: self.hswish,
        }
    }
}

/// How a conv is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConvKind {
    /// 1×1, stride 1, no padding, one group: the GEMM reads the input planes in place.
    Pointwise,
    /// One input and one output channel per group: a direct stencil per plane.
    Depthwise,
    /// Anything else: im2col rows per image and group, then the GEMM.
    Im2col,
}

/// A 16-bit integer convolution prepared once.
pub struct Conv16 {
    isa: Isa,
    geom: Conv2d,
    kind: ConvKind,
    /// Output channels, and per group.
    m: usize,
    mg: usize,
    /// Input channels per group, kernel.
    cg: usize,
    kh: usize,
    kw: usize,
    /// Weights packed per group (GEMM kinds; [`pack_a`]) or raw per channel (depthwise, widened).
    a: Vec<i16>,
    /// A fused function's table ([`lut16`]) and its shift, empty without one.
    table: Vec<i16>,
    table_shift: u32,
    /// Pointwise over a 1×1 map: the weights row-major (`m×c`, widened) for [`gemv16`]; else empty.
    rowmajor: Vec<i16>,
    /// Depthwise: per channel and kernel row, the taps in pairs `(w[2q], w[2q+1])` as one i32 (low half
    /// first; a zero pads an odd row), what `vpmaddwd` multiplies.
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    pairs: Vec<i32>,
    rows: Rows,
}

/// A 16-bit integer matmul prepared once: W^T row-major, widened.
pub struct Mat16 {
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    isa: Isa,
    wt: Vec<i16>,
    k: usize,
    n: usize,
    rows: Rows,
}

/// A 16-bit Add/Sub/Mul.
#[derive(Clone, Copy, Debug)]
pub struct Bin16 {
    op: BinOp,
    /// Add/Sub: the integer multipliers and shift ([`add16_params`]; Sub's second one negated).
    add: (i32, i32, u32),
    /// Mul: `s_a·s_b / s_y`.
    mul: FixedMultiplier,
    /// Mul, format 12 on: the same in f32 ([`crate::ir::quant::requant_f32`], used instead of `mul`).
    fmul: Option<f32>,
    lo: i32,
    hi: i32,
}

impl Bin16 {
    /// The integer rule on one pair.
    #[inline(always)]
    pub fn apply(&self, a: i16, b: i16) -> i16 {
        let v = match (self.op, self.fmul) {
            (BinOp::Mul, Some(f)) => requant_f32(a as i32 * b as i32, f, self.lo, self.hi),
            (BinOp::Mul, None) => self.mul.apply(a as i32 * b as i32),
            _ => add16(a, b, self.add),
        };
        v.clamp(self.lo, self.hi) as i16
    }
}

/// Per-node state of the 16-bit engine.
pub enum Q16Prep {
    /// f32 → int16 with the output's scale.
    Quantize(f32, Isa),
    /// int16 → f32 with the input's scale.
    Dequantize(f32),
    /// Convolution.
    Conv(Box<Conv16>),
    /// Matmul.
    MatMul(Box<Mat16>),
    /// Add/Sub/Mul and the path, with each constant operand's values (copied: the blob may sit at an odd
    /// address).
    Binary((Bin16, Isa), [Option<Vec<i16>>; 2]),
    /// A table ([`lut16`]), its shift and the path.
    Lut(Vec<i16>, u32, Isa),
    /// A function in f32 ([`crate::ir::quant::unary16`]): its constants and the path.
    Unary((f32, f32), Isa),
    /// Per input: the rescale to the output's scale (`None`: the same scale).
    Concat(Vec<Option<FixedMultiplier>>),
    /// Average pooling: the multiplier `s_x / (s_y·d)` for every divisor `d` up to the window's.
    Avg(Vec<FixedMultiplier>),
    /// Slice, Pad, nearest Resize: index maps and the fill value.
    Gather(GatherMaps, i16),
    /// Max pooling, Reshape, Transpose, Split: values move unchanged.
    Move,
    /// A rescale between widths ([`Op::Requantize`]).
    Requantize(Box<Rescale>, Isa),
}

/// [`Op::Requantize`]'s rule as a one-row [`Requant`] (bias `−z_x`), with its output width; from int8, the
/// 256 results in a table.
pub struct Rescale {
    bias: i32,
    mult: FixedMultiplier,
    zp_out: i32,
    lo: i32,
    hi: i32,
    out16: bool,
    table: Vec<i32>,
}

impl Rescale {
    /// From x's and y's `(scale, zero point, int16?)`.
    fn new((sx, zx, x16): (f32, i32, bool), (sy, zy, out16): (f32, i32, bool)) -> Rescale {
        let (lo, hi) = if out16 {
            (i16::MIN as i32, i16::MAX as i32)
        } else {
            (-128, 127)
        };
        let mut r = Rescale {
            bias: -zx,
            mult: mult(sx as f64 / sy as f64),
            zp_out: zy,
            lo,
            hi,
            out16,
            table: Vec::new(),
        };
        if !x16 {
            r.table = (-128..128).map(|v| r.requant().value(0, v)).collect();
        }
        r
    }

    fn requant(&self) -> Requant<'_> {
        Requant {
            bias: core::slice::from_ref(&self.bias),
            mult: core::slice::from_ref(&self.mult),
            zp_out: self.zp_out,
            lo: self.lo,
            hi: self.hi,
            fscale: &[],
            hswish: None,
        }
    }
}

/// Packs weights `w(row, k)` (`m×k`) as [`MR`]-row panels of k-pairs: panel `p`, pair `q`, row `r` holds
/// `w(4p + r, 2q)` then `w(4p + r, 2q + 1)` (zero past `m` and `k`).
pub fn pack_a(m: usize, k: usize, w: impl Fn(usize, usize) -> i16) -> Vec<i16> {
    let kp = k.div_ceil(2);
    let mut a = vec![0i16; m.div_ceil(MR) * kp * 2 * MR];
    for (i, v) in a.iter_mut().enumerate() {
        let (p, rest) = (i / (kp * 2 * MR), i % (kp * 2 * MR));
        let (q, r, h) = (rest / (2 * MR), (rest / 2) % MR, rest % 2);
        let (row, kk) = (p * MR + r, 2 * q + h);
        if row < m && kk < k {
            *v = w(row, kk);
        }
    }
    a
}

/// One tile: rows `0..rows` (≤ [`MR`]) of panel `a` times columns `0..cols` (≤ [`NR`]) of `b` (row
/// stride `ldb`, `k` rows), requantized by `rq` into `c` (row stride `ldc`). The scalar path, and every
/// path's column tail.
///
/// # Safety
/// `b` valid for `k` rows of `cols` values at stride `ldb`; `c` for `rows` rows of `cols` at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_scalar(
    k: usize,
    a: &[i16],
    b: *const i16,
    ldb: usize,
    c: *mut i16,
    ldc: usize,
    (rows, cols): (usize, usize),
    rq: &Requant,
) {
    for r in 0..rows {
        let mut acc = [0i32; NR];
        for kk in 0..k {
            let w = a[(kk / 2) * 2 * MR + 2 * r + kk % 2] as i32;
            // SAFETY: row kk of b holds cols values (the caller's contract).
            let row = unsafe { core::slice::from_raw_parts(b.add(kk * ldb), cols) };
            for (s, &x) in acc.iter_mut().zip(row) {
                *s += w * x as i32;
            }
        }
        for (j, &s) in acc.iter().enumerate().take(cols) {
            // SAFETY: the caller's contract.
            unsafe { *c.add(r * ldc + j) = rq.value(r, s) as i16 };
        }
    }
}

/// `c = rq(A·B)` for row panels `panels` of packed `a` ([`pack_a`] of `m×k`) and `b` (`k×n`, row stride
/// `ldb`), into `c` (row stride `ldc`); `rq` from row 0 of `a`; then `table` ([`lut16`]) over the
/// outputs, if given (a function fused into the conv).
///
/// # Safety
/// `b` valid for `k` rows of `n` values at stride `ldb`; `c` valid for the panels' rows (< `m`) of `n`
/// values at stride `ldc`, written by no one else meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm16(
    isa: Isa,
    (m, n, k): (usize, usize, usize),
    a: &[i16],
    b: *const i16,
    ldb: usize,
    c: *mut i16,
    ldc: usize,
    rq: &Requant,
    panels: core::ops::Range<usize>,
    table: Option<(&[i16], u32)>,
) {
    let kp = k.div_ceil(2);
    let plen = kp * 2 * MR;
    // (panel by panel, each across the columns: measured as fast as columns outer on PP-OCR cls, and the
    // rows' requantization constants are set up once per panel)
    let vector = match isa {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::Avx2 | Isa::AvxVnni => true,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod => true,
        _ => false,
    };
    let full = if vector { n / NR * NR } else { 0 };
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    let mac = super::kernels::x86::mac16(isa);
    // (panels at a time: two on AVX512-VNNI, whose registers hold 8 rows' accumulators)
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    let group = super::kernels::x86::panels16(mac);
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    let group = 1;
    let mut p = panels.start;
    while p < panels.end {
        let np = group.min(panels.end - p);
        let (ap, r0) = (&a[p * plen..(p + np) * plen], p * MR);
        let nrows = (m - r0).min(MR * np);
        p += np;
        let rq = rq.from_row(r0);
        // SAFETY: the caller's contract; the vector tiles read `full` columns of every row of b (and,
        // past them, the last 16 columns) and write them in nrows rows of c, the scalar ones the rest.
        unsafe {
            let cp = c.add(r0 * ldc);
            if full > 0 {
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                super::kernels::x86::q16_panel(mac, k, ap, b, ldb, cp, ldc, (nrows, full), &rq);
                #[cfg(target_arch = "aarch64")]
                for j in (0..full).step_by(NR) {
                    super::kernels::neon::q16_tile_neon(
                        k,
                        ap,
                        b.add(j),
                        ldb,
                        cp.add(j),
                        ldc,
                        nrows,
                        &rq,
                    );
                }
            }
            let mut j = full;
            #[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
            if full > 0 && n > full {
                // the column tail as one more vector tile over the last 16 columns, overlapping the
                // one before: those columns get the same integers again (det's 10x10 maps: n = 100,
                // whose 4-column scalar tail cost as much as the 96 vector columns)
                let t = n - NR;
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                super::kernels::x86::q16_panel(
                    mac,
                    k,
                    ap,
                    b.add(t),
                    ldb,
                    cp.add(t),
                    ldc,
                    (nrows, NR),
                    &rq,
                );
                #[cfg(target_arch = "aarch64")]
                super::kernels::neon::q16_tile_neon(
                    k,
                    ap,
                    b.add(t),
                    ldb,
                    cp.add(t),
                    ldc,
                    nrows,
                    &rq,
                );
                j = n;
            }
            while j < n {
                let cols = (n - j).min(NR);
                for (g, r) in (0..nrows).step_by(MR).enumerate() {
                    let (ag, rows) = (&ap[g * plen..], (nrows - r).min(MR));
                    let (cg, rqg) = (cp.add(r * ldc + j), rq.from_row(r));
                    tile_scalar(k, ag, b.add(j), ldb, cg, ldc, (rows, cols), &rqg);
                }
                j += cols;
            }
            // a fused function: over the panel's rows while they are in L1
            if let Some(t) = table {
                for r in 0..nrows {
                    lut_inplace(isa, t, core::slice::from_raw_parts_mut(cp.add(r * ldc), n));
                }
            }
        }
    }
    let _ = vector;
}

/// `out[i] = rq(r, acc[i])` for one row, on the path's vector epilogue where it has one.
pub fn requant_row16(isa: Isa, rq: &Requant, r: usize, acc: &[i32], out: &mut [i16]) {
    #[allow(unused_mut)]
    let mut i = 0;
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni) {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        i = unsafe { super::kernels::x86::requant_row16_avx2(rq, r, acc, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if matches!(isa, Isa::Neon | Isa::Dotprod) {
        // SAFETY: NEON is part of aarch64.
        i = unsafe { super::kernels::neon::requant_row16_neon(rq, r, acc, out) };
    }
    let _ = isa;
    for (o, &a) in out[i..].iter_mut().zip(&acc[i..]) {
        *o = rq.value(r, a) as i16;
    }
}

impl Conv16 {
    /// The conv's kind, packed weights and requantization; `None` if a multiplier cannot be encoded (not
    /// in a valid model).
    fn new(isa: Isa, model: &Model, n: &Node, geom: &Conv2d, lo: i16, hi: i16) -> Option<Conv16> {
        let g = &model.graph;
        let wt = &g.tensors[n.inputs[1] as usize];
        let ws: Vec<usize> = wt.dims();
        let w = super::ops::quant::i8s(model.const_bytes(n.inputs[1] as usize));
        let wsc = wt.quant.as_ref().map_or(&[][..], |q| &q.scale[..]);
        // (a fused function's table carries the scale the conv requantizes to)
        let target = n.inputs.get(3).copied().unwrap_or(n.outputs[0]);
        let (sx, sy) = (scale(model, n.inputs[0]), scale(model, target));
        // a fused f32 function: the sums scaled to real values, then the function's constant
        let hswish = match &n.op {
            Op::Q16ConvAct { act, .. } => Some(unary16_params(act, sx, sy)?.1),
            _ => None,
        };
        let mut mults = Vec::with_capacity(ws[0]);
        let mut fscale = Vec::new();
        for r in 0..ws[0] {
            let sw = *wsc.get(if wsc.len() == 1 { 0 } else { r })?;
            if hswish.is_some() {
                // (the Q31 multipliers go unused: the f32 rows' vector epilogue needs none)
                mults.push(FixedMultiplier { mult: 0, shift: 0 });
                fscale.push(f32_scale(sx as f64 * sw as f64));
                continue;
            }
            let real = sx as f64 * sw as f64 / sy as f64;
            mults.push(FixedMultiplier::from_real(real)?);
            if f32_requant(model) {
                fscale.push(f32_scale(real));
            }
        }
        let bias = match n.inputs.get(2) {
            Some(&b) => i32s(model.const_bytes(b as usize)),
            None => vec![0; ws[0]],
        };
        Some(Conv16::from_parts(
            isa,
            geom,
            (w, [ws[0], ws[1], ws[2], ws[3]]),
            Rows {
                bias,
                mult: mults,
                fscale,
                hswish,
                lo: lo as i32,
                hi: hi as i32,
            },
        ))
    }

    /// A conv of weights `w` (`[M, C/groups, kh, kw]`) requantized by `rows`, on path `isa`.
    pub fn from_parts(isa: Isa, geom: &Conv2d, (w, ws): (&[i8], [usize; 4]), rows: Rows) -> Conv16 {
        let [m, cg, kh, kw] = ws;
        let groups = (geom.groups as usize).max(1);
        let mg = m / groups;
        let k = cg * kh * kw;
        let pointwise =
            kh == 1 && kw == 1 && geom.strides == [1, 1] && geom.pads == [0; 4] && groups == 1;
        let kind = if pointwise {
            ConvKind::Pointwise
        } else if cg == 1 && mg == 1 {
            ConvKind::Depthwise
        } else {
            ConvKind::Im2col
        };
        let a = if kind == ConvKind::Depthwise {
            w.iter().map(|&v| v as i16).collect()
        } else {
            (0..groups)
                .flat_map(|gi| pack_a(mg, k, |r, kk| w[(gi * mg + r) * k + kk] as i16))
                .collect()
        };
        let kwp = kw.div_ceil(2);
        let pairs = if kind == ConvKind::Depthwise {
            (0..m * kh * kwp)
                .map(|i| {
                    let (row, q) = (i / kwp, i % kwp);
                    let at = |kx: usize| {
                        if kx < kw {
                            w[row * kw + kx] as i16 as u16 as i32
                        } else {
                            0
                        }
                    };
                    at(2 * q) | (at(2 * q + 1) << 16)
                })
                .collect()
        } else {
            Vec::new()
        };
        Conv16 {
            isa,
            geom: geom.clone(),
            kind,
            rowmajor: Vec::new(),
            table: Vec::new(),
            table_shift: LUT16_MAX_SHIFT,
            pairs,
            m,
            mg,
            cg,
            kh,
            kw,
            a,
            rows,
        }
    }

    /// The fused function's table and shift, if any.
    fn table(&self) -> Option<(&[i16], u32)> {
        (self.table.len() == crate::ir::quant::lut16_len(self.table_shift))
            .then_some((&self.table[..], self.table_shift))
    }

    /// Scratch bytes for input `xs` and output `ys` with `threads` threads.
    pub fn scratch_bytes(&self, xs: &[usize], ys: &[usize], threads: usize) -> usize {
        match self.kind {
            ConvKind::Pointwise => 0,
            ConvKind::Depthwise => threads * self.dw_region((xs[2], xs[3]), (ys[2], ys[3])).0,
            ConvKind::Im2col => {
                let k = self.cg * self.kh * self.kw;
                k * im2col_cols(k, ys[2] * ys[3]) * 2
            }
        }
    }

    /// A depthwise thread's scratch: (bytes, accumulators, padded plane width; 0 where the padded path
    /// does not apply). The padded path (AVX2, column stride 1 or 2 undilated, at most [`MAX_DW_TAPS`]
    /// taps per output row, a non-empty input row, a padded width at most 4·(the input's + 16)) holds the
    /// plane's accumulators (`oh` rows of `ow` rounded up to [`NR`]), its column pairs (stride 1) and the
    /// input plane zero-padded to the width its 16-column blocks read; the row-by-row path one row's
    /// accumulators.
    fn dw_region(&self, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> (usize, usize, usize) {
        let ow16 = ow.div_ceil(NR) * NR;
        let (sx, dx) = (self.geom.strides[1], self.geom.dilations[1].max(1) as usize);
        let pl = self.geom.pads[1] as usize;
        let kwp = self.kw.div_ceil(2);
        let wp = if sx == 2 && dx == 1 {
            // (column stride 2: a block reads the dwords at columns 2·(ow16 − 1 + kwp − 1) and the
            // one after; even, so each row's dwords start 4-byte apart from the plane's)
            2 * ow16.saturating_add(kwp).max((pl + w).div_ceil(2))
        } else {
            // the last block reads up to column ow16 − 1 + (2·kwp − 1)·dx (an odd row's zero tap
            // included)
            let reach = (2 * kwp - 1).saturating_mul(dx);
            (pl + w).max(ow16.saturating_add(reach))
        };
        let padded = matches!(self.isa, Isa::Avx2 | Isa::AvxVnni)
            && cfg!(all(feature = "std", target_arch = "x86_64"))
            && (sx == 1 || (sx == 2 && dx == 1))
            && self.kh * kwp <= MAX_DW_TAPS
            && w > 0
            && wp <= 4 * (w + NR);
        if padded {
            // the sums, the plane's column pairs (i32), the zero-padded plane (i16)
            (
                (oh * ow16 * 4 + h * wp * 6).next_multiple_of(4),
                oh * ow16,
                wp,
            )
        } else {
            (ow16 * 4, ow16, 0)
        }
    }

    /// Runs the conv on `x` into `y` (`scratch`: [`Conv16::scratch_bytes`], 4-byte aligned).
    pub fn run(&self, par: &Par, x: View<i16>, y: ViewMut<i16>, scratch: &mut [u8]) {
        let (nb, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let (oh, ow) = (y.shape[2], y.shape[3]);
        let npix = oh * ow;
        let groups = (self.geom.groups as usize).max(1);
        if npix == 0 || self.m == 0 {
            return;
        }
        let threads = if y.data.len() >= PAR_MIN {
            par.threads()
        } else {
            1
        };
        let yp = SyncPtr(y.data.as_mut_ptr());
        match self.kind {
            ConvKind::Depthwise => {
                let planes = nb * self.m;
                let (region, acc_len, wp) = self.dw_region((h, w), (oh, ow));
                let sp = SyncPtr(scratch.as_mut_ptr());
                par.run_on(threads, &|t| {
                    // SAFETY: thread t owns its region of the scratch (scratch_bytes: threads regions, each
                    // 4-byte aligned: acc_len i32, h·wp i32, then h·wp i16) and its planes of y.
                    let (acc, pairs, padded) = unsafe {
                        let base = sp.get().add(t * region);
                        (
                            core::slice::from_raw_parts_mut(base as *mut i32, acc_len),
                            core::slice::from_raw_parts_mut(
                                base.add(acc_len * 4) as *mut i32,
                                h * wp,
                            ),
                            core::slice::from_raw_parts_mut(
                                base.add((acc_len + h * wp) * 4) as *mut i16,
                                h * wp,
                            ),
                        )
                    };
                    // (set up once per thread: each output row overwrites the taps it takes)
                    let mut taps: DwTaps = [(core::ptr::null(), 0); MAX_DW_TAPS];
                    for p in share(planes, t, threads) {
                        let ch = p % self.m;
                        let src = &x.data[p * h * w..(p + 1) * h * w];
                        let dst = unsafe {
                            core::slice::from_raw_parts_mut(yp.get().add(p * npix), npix)
                        };
                        self.depthwise_plane(
                            ch,
                            src,
                            (h, w),
                            ow,
                            (acc, pairs, padded, wp, &mut taps),
                            dst,
                        );
                    }
                });
            }
            ConvKind::Pointwise if npix == 1 && c > 0 && self.rowmajor.len() == self.m * c => {
                // one pixel (a squeeze-excitation FC): a dot product per output channel
                let rq = self.rows.requant(0);
                for (xb, yb) in x.data.chunks_exact(c).zip(y.data.chunks_exact_mut(self.m)) {
                    gemv16(self.isa, &self.rowmajor, xb, &rq, yb);
                    if let Some(t) = self.table() {
                        lut_inplace(self.isa, t, yb);
                    }
                }
            }
            ConvKind::Pointwise => {
                let k = c;
                let panels = self.m.div_ceil(MR);
                for b in 0..nb {
                    let xb = &x.data[b * c * h * w..(b + 1) * c * h * w];
                    let bp = SyncPtr(xb.as_ptr() as *mut i16);
                    par.run_on(threads.min(panels), &|t| {
                        // SAFETY: the image's planes are k rows of npix; thread t writes its panels' rows.
                        unsafe {
                            gemm16(
                                self.isa,
                                (self.m, npix, k),
                                &self.a,
                                bp.get(),
                                npix,
                                yp.get().add(b * self.m * npix),
                                npix,
                                &self.rows.requant(0),
                                share(panels, t, threads.min(panels)),
                                self.table(),
                            )
                        }
                    });
                }
            }
            ConvKind::Im2col => {
                let k = self.cg * self.kh * self.kw;
                let bc = im2col_cols(k, npix);
                // SAFETY: the scratch holds k·bc i16 (scratch_bytes), 4-aligned.
                let cols = unsafe {
                    core::slice::from_raw_parts_mut(scratch.as_mut_ptr() as *mut i16, k * bc)
                };
                let panels = self.mg.div_ceil(MR);
                let plen = panels * k.div_ceil(2) * 2 * MR;
                for b in 0..nb {
                    for gi in 0..groups {
                        let c0 = gi * self.cg;
                        let xb = &x.data[(b * c + c0) * h * w..(b * c + c0 + self.cg) * h * w];
                        let rq = self.rows.requant(gi * self.mg);
                        let a = &self.a[gi * plen..(gi + 1) * plen];
                        // a block of output pixels at a time: its columns stay in cache while every
                        // panel reads them
                        for p0 in (0..npix).step_by(bc) {
                            let nc = (npix - p0).min(bc);
                            self.im2col(xb, (h, w), (oh, ow), p0..p0 + nc, &mut cols[..k * nc]);
                            let bp = SyncPtr(cols.as_ptr() as *mut i16);
                            par.run_on(threads.min(panels), &|t| {
                                // SAFETY: cols holds k rows of nc; thread t writes its panels' rows of
                                // this group's output channels, columns p0..p0 + nc.
                                unsafe {
                                    gemm16(
                                        self.isa,
                                        (self.mg, nc, k),
                                        a,
                                        bp.get(),
                                        nc,
                                        yp.get().add((b * self.m + gi * self.mg) * npix + p0),
                                        npix,
                                        &rq,
                                        share(panels, t, threads.min(panels)),
                                        self.table(),
                                    )
                                }
                            });
                        }
                    }
                }
            }
        }
    }

    /// One depthwise output plane: on AVX2 at column stride 1 (or 2 undilated), 16 outputs at a time over the zero-padded
    /// plane (`x86::dw16_row`: tap pairs by `vpmaddwd` or `vpdpwssd`); otherwise [`Conv16::plane`], compiled for
    /// AVX2 where the path has it (its tap loops vectorize).
    fn depthwise_plane(
        &self,
        ch: usize,
        src: &[i16],
        hw: (usize, usize),
        ow: usize,
        (acc, pairs, padded, wp, taps): DwScratch,
        dst: &mut [i16],
    ) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if wp > 0 {
            // SAFETY: dw_region chose the padded path (an AVX2 path, which the session only selects on
            // a CPU that has it) and sized the scratch for it.
            unsafe {
                self.plane_padded(
                    ch,
                    src,
                    (hw.0, hw.1, ow),
                    (acc, pairs, padded, wp, taps),
                    dst,
                )
            };
            return;
        }
        let _ = (&pairs, &padded, wp, &taps);
        let acc = &mut acc[..ow];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if matches!(self.isa, Isa::Avx2 | Isa::AvxVnni) {
            #[target_feature(enable = "avx2")]
            fn avx2(
                c: &Conv16,
                ch: usize,
                src: &[i16],
                hw: (usize, usize),
                acc: &mut [i32],
                dst: &mut [i16],
            ) {
                c.plane(ch, src, hw, acc, dst)
            }
            // SAFETY: the session only selects an AVX2 path on a CPU that has it.
            unsafe { avx2(self, ch, src, hw, acc, dst) };
            return;
        }
        self.plane(ch, src, hw, acc, dst)
    }

    /// [`Conv16::depthwise_plane`]'s AVX2 form at column stride 1, or 2 without dilation: the plane copied
    /// into `padded` (`wp` wide, zeros around: the left padding, and past the right edge as far as the
    /// last 16-column block reads); at stride 1 each column paired with the one its tap pair's second
    /// tap reads (`pairs`: the int16 pair a multiply-accumulate takes, built once per plane rather than
    /// interleaved again by every output row that reads it; at stride 2 the padded row's own dwords are
    /// those pairs); then per output row its taps inside the input, 16 outputs at a time
    /// (`x86::dw16_row`), requantized by the row epilogue.
    ///
    /// # Safety
    /// AVX2; `acc` holds `oh` rows of `ow` rounded up to 16, `pairs` and `padded` `h·wp` values with `wp`
    /// from [`Conv16::dw_region`]; `dst` is `oh` rows of `ow`.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[target_feature(enable = "avx2")]
    unsafe fn plane_padded(
        &self,
        ch: usize,
        src: &[i16],
        (h, w, ow): (usize, usize, usize),
        (acc, pairs, padded, wp, taps): DwScratch,
        dst: &mut [i16],
    ) {
        let g = &self.geom;
        let (sy, dy, dx) = (
            g.strides[0] as isize,
            g.dilations[0].max(1) as isize,
            g.dilations[1].max(1) as usize,
        );
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as usize);
        // (each row: zeros, the input row, zeros; only the margins are written as zeros)
        for (prow, row) in padded.chunks_exact_mut(wp).zip(src.chunks_exact(w.max(1))) {
            prow[..pl].fill(0);
            prow[pl..pl + w].copy_from_slice(row);
            prow[pl + w..].fill(0);
        }
        // column stride 2 (undilated): output ox's tap pair q reads padded columns 2·ox + 2q and the
        // next, a dword of the padded row itself, and the outputs' dwords lie 4 bytes apart: the row
        // read as i32 from column 2q (wp even: dw_region). Stride 1: column c with column c + dx, for
        // the columns that have one (no block reads past them: dw_region).
        let split = g.strides[1] == 2;
        let (step, second) = if split { (1, 0) } else { (2 * dx, dx) };
        if !split {
            let paired = wp - second.min(wp);
            for (prow, row) in pairs.chunks_exact_mut(wp).zip(padded.chunks_exact(wp)) {
                for (p, (&lo, &hi)) in prow[..paired]
                    .iter_mut()
                    .zip(row.iter().zip(&row[wp - paired..]))
                {
                    *p = (lo as u16 as u32 | (hi as u16 as u32) << 16) as i32;
                }
            }
        }
        let kwp = self.kw.div_ceil(2);
        let taps_all = &self.pairs[ch * self.kh * kwp..(ch + 1) * self.kh * kwp];
        let rq = self.rows.requant(0);
        let ow16 = ow.div_ceil(NR) * NR;
        let oh = dst.len() / ow.max(1);
        let mac = super::kernels::x86::mac16(self.isa);
        for oy in 0..oh {
            // every tap pair this output row takes: where its pairs start, and its weights
            let mut n = 0;
            for ky in 0..self.kh {
                let iy = oy as isize * sy + ky as isize * dy - pt;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let at = iy as usize * wp;
                for (q, &w) in taps_all[ky * kwp..(ky + 1) * kwp].iter().enumerate() {
                    let p = if split {
                        // (a raw pointer read by unaligned loads only)
                        padded[at + 2 * q..].as_ptr() as *const i32
                    } else {
                        pairs[at + q * step..].as_ptr()
                    };
                    taps[n] = (p, w);
                    n += 1;
                }
            }
            // SAFETY: every block o reads pairs o..o + 16 past each tap's start, inside its row (below
            // wp − second: dw_region), and writes acc[oy·ow16..][..ow16] (acc holds oh rows of ow16).
            unsafe {
                super::kernels::x86::dw16_row(
                    mac,
                    &taps[..n],
                    ow16 / NR,
                    acc.as_mut_ptr().add(oy * ow16),
                )
            };
        }
        // the plane's epilogue in one pass where its rows are contiguous (ow a multiple of 16: the small
        // maps of a classifier run one call per plane, not per row)
        if ow == ow16 {
            requant_row16(self.isa, &rq, ch, &acc[..oh * ow], dst);
        } else {
            for (oy, out) in dst.chunks_exact_mut(ow.max(1)).enumerate() {
                requant_row16(self.isa, &rq, ch, &acc[oy * ow16..oy * ow16 + ow], out);
            }
        }
        if let Some(t) = self.table() {
            lut_inplace(self.isa, t, dst);
        }
    }

    /// One depthwise output plane: taps inside the input summed in i32 row by row, then requantized.
    #[inline(always)]
    fn plane(
        &self,
        ch: usize,
        src: &[i16],
        (h, w): (usize, usize),
        acc: &mut [i32],
        dst: &mut [i16],
    ) {
        let g = &self.geom;
        let ow = acc.len();
        let (sy, sx) = (g.strides[0] as isize, g.strides[1] as isize);
        let (dy, dx) = (
            g.dilations[0].max(1) as isize,
            g.dilations[1].max(1) as isize,
        );
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
        let taps = &self.a[ch * self.kh * self.kw..(ch + 1) * self.kh * self.kw];
        let rq = self.rows.requant(0);
        for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
            acc.fill(0);
            for ky in 0..self.kh {
                let iy = oy as isize * sy + ky as isize * dy - pt;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let row = &src[iy as usize * w..(iy as usize + 1) * w];
                for kx in 0..self.kw {
                    let wv = taps[ky * self.kw + kx] as i32;
                    let off = kx as isize * dx - pl;
                    let (lo, hi) = valid_range(off, sx, w, ow);
                    if lo == hi {
                        continue; // (the tap lies in the padding for every output)
                    }
                    if sx == 1 {
                        let start = (lo as isize + off) as usize;
                        for (a, &v) in acc[lo..hi].iter_mut().zip(&row[start..]) {
                            *a += wv * v as i32;
                        }
                    } else {
                        // (valid_range: every tap of lo..hi lies in the row)
                        let start = (lo as isize * sx + off) as usize;
                        let taps = row[start..].iter().step_by(sx as usize);
                        for (a, &v) in acc[lo..hi].iter_mut().zip(taps) {
                            *a += wv * v as i32;
                        }
                    }
                }
            }
            requant_row16(self.isa, &rq, ch, acc, out);
            if let Some(t) = self.table() {
                lut_inplace(self.isa, t, out);
            }
        }
    }

    /// The im2col columns of output pixels `px` (row-major over `oh×ow`): `cols` holds `cg·kh·kw` rows of
    /// `px.len()`, one per tap, zero where a tap lies in the padding.
    fn im2col(
        &self,
        x: &[i16],
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        px: core::ops::Range<usize>,
        cols: &mut [i16],
    ) {
        let g = &self.geom;
        let (sy, sx) = (g.strides[0] as isize, g.strides[1] as isize);
        let (dy, dx) = (
            g.dilations[0].max(1) as isize,
            g.dilations[1].max(1) as isize,
        );
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
        let nc = px.len();
        if nc == 0 || ow == 0 {
            return;
        }
        let rows = px.start / ow..((px.end - 1) / ow + 1).min(oh);
        for ci in 0..self.cg {
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let r = (ci * self.kh + ky) * self.kw + kx;
                    let dst = &mut cols[r * nc..(r + 1) * nc];
                    let off = kx as isize * dx - pl;
                    let (lo, hi) = valid_range(off, sx, w, ow);
                    for oy in rows.clone() {
                        // this output row's pixels in the block: columns xa..xb
                        let (pa, pb) = (px.start.max(oy * ow), px.end.min((oy + 1) * ow));
                        let (xa, xb) = (pa - oy * ow, pb - oy * ow);
                        let o = &mut dst[pa - px.start..pb - px.start];
                        let iy = oy as isize * sy + ky as isize * dy - pt;
                        let (vl, vh) = (lo.max(xa), hi.min(xb));
                        if iy < 0 || iy >= h as isize || vl >= vh {
                            o.fill(0); // (the tap lies in the padding for all of them)
                            continue;
                        }
                        let row = &plane[iy as usize * w..(iy as usize + 1) * w];
                        o[..vl - xa].fill(0);
                        o[vh - xa..].fill(0);
                        // (valid_range: every tap of vl..vh lies in the row)
                        let start = (vl as isize * sx + off) as usize;
                        let o = &mut o[vl - xa..vh - xa];
                        if sx == 1 {
                            o.copy_from_slice(&row[start..start + (vh - vl)]);
                        } else if sx == 2 {
                            // (pairs of the row, whose first values are the taps: a loop that
                            // vectorizes, where step_by copied one value at a time; a stem's 3x3
                            // stride-2 conv spent 7% of PP-OCR cls int16 here)
                            let n = o.len();
                            let full = n.min((row.len() - start) / 2);
                            for (v, p) in o[..full].iter_mut().zip(row[start..].chunks_exact(2)) {
                                *v = p[0];
                            }
                            if full < n {
                                o[full] = row[start + 2 * full];
                            }
                        } else {
                            let taps = row[start..].iter().step_by(sx as usize);
                            for (v, &r) in o.iter_mut().zip(taps) {
                                *v = r;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Output pixels per 16-bit im2col block: the block's `k` rows within [`IM2COL_BYTES`] (so it stays in
/// cache while every panel of the GEMM reads it), a multiple of [`NR`] (at least one), at most `npix`.
fn im2col_cols(k: usize, npix: usize) -> usize {
    (IM2COL_BYTES / 2 / k.max(1) / NR * NR)
        .max(NR)
        .min(npix.max(1))
}

/// Bytes of one im2col block (PP-OCR det's 3x3 conv over 96 channels at 80x80 built an 11 MB matrix
/// whole: 13.4 ms, 9.9 GMAC/s).
const IM2COL_BYTES: usize = 256 * 1024;

/// The outputs `ox` in `lo..hi` whose tap `ox·s + off` lies in `0..w` (at most `ow` outputs).
fn valid_range(off: isize, s: isize, w: usize, ow: usize) -> (usize, usize) {
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    let last = w as isize - 1 - off;
    let hi = if last < 0 { 0 } else { last / s + 1 };
    let hi = (hi as usize).min(ow);
    let lo = (lo as usize).min(hi);
    (lo, hi)
}

/// Prepares a node of this engine (the loader validated types, parameters and bounds).
pub fn prepare(isa: Isa, model: &Model, n: &Node, shapes: &[Vec<usize>]) -> Q16Prep {
    let (x, y) = (n.inputs[0], n.outputs[0]);
    let shape = |t: u32| shapes[t as usize].as_slice();
    match &n.op {
        Op::Quantize => Q16Prep::Quantize(scale(model, y), isa),
        Op::Dequantize => Q16Prep::Dequantize(scale(model, x)),
        Op::Q16Conv { geom, lo, hi } | Op::Q16ConvAct { geom, lo, hi, .. } => {
            match Conv16::new(isa, model, n, geom, *lo, *hi) {
                Some(mut c) => {
                    if let Some(&t) = n.inputs.get(3) {
                        c.table = table_values(model.const_bytes(t as usize));
                        // (the loader checked the length)
                        c.table_shift =
                            crate::ir::quant::lut16_shift(c.table.len()).unwrap_or(LUT16_MAX_SHIFT);
                    }
                    if c.kind == ConvKind::Pointwise && shape(x)[2..].iter().product::<usize>() == 1
                    {
                        let w = super::ops::quant::i8s(model.const_bytes(n.inputs[1] as usize));
                        c.rowmajor = w.iter().map(|&v| v as i16).collect();
                    }
                    Q16Prep::Conv(Box::new(c))
                }
                None => Q16Prep::Move, // unreachable for a validated model
            }
        }
        Op::Q16MatMul { lo, hi } => {
            let wt = &model.graph.tensors[n.inputs[1] as usize];
            let (k, nn) = (wt.shape[0] as usize, wt.shape[1] as usize);
            let w = super::ops::quant::i8s(model.const_bytes(n.inputs[1] as usize));
            let ws = wt.quant.as_ref().map_or(&[][..], |q| &q.scale[..]);
            let (sx, sy) = (scale(model, x), scale(model, y));
            let real = |j: usize| {
                let sw = ws
                    .get(if ws.len() == 1 { 0 } else { j })
                    .copied()
                    .unwrap_or(1.0);
                sx as f64 * sw as f64 / sy as f64
            };
            let mult = (0..nn).map(|j| self::mult(real(j))).collect();
            let fscale = match f32_requant(model) {
                true => (0..nn).map(|j| f32_scale(real(j))).collect(),
                false => Vec::new(),
            };
            let bias = match n.inputs.get(2) {
                Some(&b) => i32s(model.const_bytes(b as usize)),
                None => vec![0; nn],
            };
            Q16Prep::MatMul(Box::new(Mat16 {
                isa,
                wt: (0..nn * k)
                    .map(|i| w[(i % k) * nn + i / k] as i16)
                    .collect(),
                k,
                n: nn,
                rows: Rows {
                    bias,
                    mult,
                    fscale,
                    hswish: None,
                    lo: *lo as i32,
                    hi: *hi as i32,
                },
            }))
        }
        Op::Q16Binary { op, lo, hi } => {
            let (sa, sb, sy) = (
                scale(model, n.inputs[0]) as f64,
                scale(model, n.inputs[1]) as f64,
                scale(model, y) as f64,
            );
            let konst = |k: usize| {
                let t = n.inputs[k];
                model.graph.tensors[t as usize]
                    .is_const()
                    .then(|| i16s(model.const_bytes(t as usize)))
            };
            Q16Prep::Binary(
                (
                    Bin16 {
                        op: *op,
                        add: match add16_params(sa / sy, sb / sy) {
                            Some((ma, mb, sh)) if *op == BinOp::Sub => (ma, -mb, sh),
                            Some(p) => p,
                            None => (0, 0, 0), // unreachable for a validated model
                        },
                        mul: mult(sa * sb / sy),
                        fmul: f32_requant(model).then(|| f32_scale(sa * sb / sy)),
                        lo: *lo as i32,
                        hi: *hi as i32,
                    },
                    isa,
                ),
                [konst(0), konst(1)],
            )
        }
        Op::Requantize => {
            let g = &model.graph;
            let sz = |t: u32| {
                g.tensors[t as usize]
                    .quant
                    .as_ref()
                    .map_or((1.0, 0), |q| (q.scale[0], q.zero_point[0]))
            };
            let ((sx, zx), (sy, zy)) = (sz(x), sz(y));
            let w = |t: u32| g.tensors[t as usize].dtype == DType::I16;
            let r = Rescale::new((sx, zx, w(x)), (sy, zy, w(y)));
            Q16Prep::Requantize(Box::new(r), isa)
        }
        Op::Q16Unary(f) => {
            // (the loader checked the function and scales)
            let p = unary16_params(f, scale(model, x), scale(model, y)).unwrap_or((1.0, 1.0));
            Q16Prep::Unary(p, isa)
        }
        Op::Q16Lut => {
            let t = table_values(model.const_bytes(n.inputs[1] as usize));
            let shift = crate::ir::quant::lut16_shift(t.len()).unwrap_or(LUT16_MAX_SHIFT);
            Q16Prep::Lut(t, shift, isa)
        }
        Op::Concat { .. } => {
            let sy = scale(model, y);
            Q16Prep::Concat(
                n.inputs
                    .iter()
                    .map(|&i| {
                        let sx = scale(model, i);
                        (sx != sy).then(|| mult(sx as f64 / sy as f64))
                    })
                    .collect(),
            )
        }
        Op::Pool(p) if matches!(p.kind, PoolKind::Avg { .. }) => {
            avg(model, x, y, (p.kernel[0] * p.kernel[1]) as usize)
        }
        Op::GlobalPool(PoolKind::Avg { .. }) => avg(model, x, y, shape(x)[2..].iter().product()),
        Op::Slice { starts, steps } => {
            Q16Prep::Gather(layout::slice_maps(shape(x), shape(y), starts, steps), 0)
        }
        Op::Pad { pads, mode } => {
            let fill = match mode {
                PadMode::Constant(c) => quantize_f32_i16(*c, scale(model, x)),
                _ => 0,
            };
            Q16Prep::Gather(layout::pad_maps(shape(x), shape(y), pads, *mode), fill)
        }
        Op::Resize {
            mode: ResizeMode::Nearest(nm),
            coord,
            scales,
        } => Q16Prep::Gather(
            layout::nearest_maps(shape(x), shape(y), scales, *coord, *nm),
            0,
        ),
        _ => Q16Prep::Move,
    }
}

/// Average pooling's multipliers for every divisor up to `max_div` (`d = 0` as 1).
fn avg(model: &Model, x: u32, y: u32, max_div: usize) -> Q16Prep {
    let (sx, sy) = (scale(model, x) as f64, scale(model, y) as f64);
    Q16Prep::Avg(
        (0..=max_div)
            .map(|d| mult(sx / (sy * d.max(1) as f64)))
            .collect(),
    )
}

/// Scratch bytes a node needs with `threads` threads.
pub fn scratch_bytes(prep: &Q16Prep, xs: &[usize], ys: &[usize], threads: usize) -> usize {
    match prep {
        Q16Prep::Conv(c) => c.scratch_bytes(xs, ys, threads),
        _ => 0,
    }
}

/// Runs a node of this engine. `fins`/`qins`/`hins` hold the f32, int8 and int16 views of the inputs
/// (each input is in the one its type selects; the others are empty), likewise the outputs.
#[allow(clippy::too_many_arguments)]
pub fn exec(
    par: &Par,
    op: &Op,
    prep: &Q16Prep,
    (fins, qins, hins): (&[View], &[View<i8>], &[View<i16>]),
    fouts: &mut [ViewMut],
    qouts: &mut [ViewMut<i8>],
    houts: &mut [ViewMut<i16>],
    scratch: &mut [u8],
) {
    match prep {
        Q16Prep::Requantize(r, isa) => rescale(*isa, r, (qins[0].data, hins[0].data), qouts, houts),
        Q16Prep::Quantize(s, isa) => quantize16(*isa, fins[0].data, *s, houts[0].data),
        Q16Prep::Dequantize(s) => {
            for (o, &q) in fouts[0].data.iter_mut().zip(hins[0].data) {
                *o = dequantize_i16(q, *s);
            }
        }
        Q16Prep::Conv(c) => c.run(par, hins[0], reborrow(&mut houts[0]), scratch),
        Q16Prep::MatMul(m) => matmul(m, hins[0], reborrow(&mut houts[0])),
        Q16Prep::Binary(b, consts) => {
            let operand = |k: usize| match &consts[k] {
                Some(c) => View {
                    data: c.as_slice(),
                    shape: hins[k].shape,
                },
                None => hins[k],
            };
            binary(b.1, &b.0, operand(0), operand(1), reborrow(&mut houts[0]))
        }
        Q16Prep::Lut(t, shift, isa) => lut_slice(*isa, (t, *shift), hins[0].data, houts[0].data),
        Q16Prep::Unary(p, isa) => unary_slice(*isa, *p, hins[0].data, houts[0].data),
        Q16Prep::Concat(r) => {
            let Op::Concat { axis } = op else { return };
            layout::concat(
                *axis as usize,
                hins,
                reborrow(&mut houts[0]),
                |k, s, d| match r.get(k).copied().flatten() {
                    None => d.copy_from_slice(s),
                    Some(m) => {
                        for (o, &v) in d.iter_mut().zip(s) {
                            *o = m.apply(v as i32).clamp(-32768, 32767) as i16;
                        }
                    }
                },
            );
        }
        Q16Prep::Avg(mults) => {
            let (x, y) = (hins[0], reborrow(&mut houts[0]));
            // (the sum in i64: a global pool over more than 2^16 values can pass i32)
            let out = |sum: i64, div: usize| {
                mults[div.min(mults.len() - 1)]
                    .apply_wide(sum)
                    .clamp(-32768, 32767) as i16
            };
            match op {
                Op::Pool(p) => {
                    let incl = matches!(
                        p.kind,
                        PoolKind::Avg {
                            count_include_pad: true
                        }
                    );
                    pool::windows(
                        p,
                        x,
                        y,
                        0i64,
                        |a, v| a + v as i64,
                        |a, (count, padded)| {
                            let div = if incl { count + padded } else { count };
                            if div == 0 {
                                0
                            } else {
                                out(a, div)
                            }
                        },
                    )
                }
                _ => {
                    let inner: usize = x.shape[2..].iter().product::<usize>().max(1);
                    for (o, src) in y.data.iter_mut().zip(x.data.chunks_exact(inner)) {
                        // (up to 2^16 values an i32 sum is exact, and it vectorizes)
                        let sum: i64 = if inner <= 1 << 16 {
                            src.iter().map(|&v| v as i32).sum::<i32>() as i64
                        } else {
                            src.iter().map(|&v| v as i64).sum()
                        };
                        *o = out(sum, inner);
                    }
                }
            }
        }
        Q16Prep::Gather(m, fill) => layout::gather(par, m, *fill, hins[0], reborrow(&mut houts[0])),
        Q16Prep::Move => super::ops::quant::move_values(op, i16::MIN, hins[0], houts),
    }
}

/// [`Op::Requantize`]: from int8 through the table, from int16 by the row epilogue (in chunks of i32
/// sums), into whichever output view its width selects.
fn rescale(
    isa: Isa,
    r: &Rescale,
    (x8, x16): (&[i8], &[i16]),
    qouts: &mut [ViewMut<i8>],
    houts: &mut [ViewMut<i16>],
) {
    let (y8, y16) = (&mut qouts[0].data, &mut houts[0].data);
    if !r.table.is_empty() {
        let t = |v: i8| r.table[(v as i32 + 128) as usize];
        if r.out16 {
            y16.iter_mut().zip(x8).for_each(|(o, &v)| *o = t(v) as i16);
        } else {
            y8.iter_mut().zip(x8).for_each(|(o, &v)| *o = t(v) as i8);
        }
        return;
    }
    let rq = r.requant();
    let mut acc = [0i32; 256];
    for (i, xc) in x16.chunks(256).enumerate() {
        for (a, &v) in acc.iter_mut().zip(xc) {
            *a = v as i32;
        }
        let acc = &acc[..xc.len()];
        let at = i * 256..i * 256 + xc.len();
        if r.out16 {
            if let Some(o) = y16.get_mut(at) {
                requant_row16(isa, &rq, 0, acc, o);
            }
        } else if let Some(o) = y8.get_mut(at) {
            crate::cpu::qgemm::requant_row(isa, &rq, 0, acc, o);
        }
    }
}

/// `y[i] = quantize_f32_i16(x[i], s)`, 16 at a time on AVX2 (the input stage's conversion was 4% of
/// PP-OCR cls's int16 run).
fn quantize16(isa: Isa, x: &[f32], s: f32, y: &mut [i16]) {
    #[inline(always)]
    fn body(x: &[f32], s: f32, y: &mut [i16]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = quantize_f32_i16(v, s);
        }
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni) {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        let done = unsafe { super::kernels::x86::quantize16_avx2(x, s, y) };
        return body(&x[done..], s, &mut y[done..]);
    }
    let _ = isa;
    body(x, s, y)
}

/// `y[i] = lut16(t, x[i], shift)`: the values copied, then looked up in place.
fn lut_slice(isa: Isa, t: (&[i16], u32), x: &[i16], y: &mut [i16]) {
    let n = x.len().min(y.len());
    y[..n].copy_from_slice(&x[..n]);
    lut_inplace(isa, t, &mut y[..n]);
}

/// `y[i] = unary16(x[i], p)` (HardSwish in f32): the same rule as the row epilogue of a Q16ConvAct with
/// the sums `x` at scale `s_x` (`hard_swish_f32` of `f32(x)·s_x`), so that epilogue's vector forms
/// serve, 16 at a time on AVX2 and 8 on NEON.
fn unary_slice(isa: Isa, (sx, k): (f32, f32), x: &[i16], y: &mut [i16]) {
    let n = x.len().min(y.len());
    let rq = Requant {
        bias: &[0],
        // (unused: the f32 row takes no Q31 multiplier)
        mult: &[FixedMultiplier { mult: 0, shift: 0 }],
        zp_out: 0,
        lo: i16::MIN as i32,
        hi: i16::MAX as i32,
        fscale: &[sx],
        hswish: Some(k),
    };
    #[allow(unused_mut)]
    let mut i = 0;
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni) {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        i = unsafe { super::kernels::x86::requant_i16_avx2(&rq, &x[..n], &mut y[..n]) };
    }
    #[cfg(target_arch = "aarch64")]
    if matches!(isa, Isa::Neon | Isa::Dotprod) {
        // SAFETY: NEON is part of aarch64.
        i = unsafe { super::kernels::neon::requant_i16_neon(&rq, &x[..n], &mut y[..n]) };
    }
    let _ = isa;
    for (o, &v) in y[i..n].iter_mut().zip(&x[i..n]) {
        *o = rq.value(0, v as i32) as i16;
    }
}

/// `v = lut16(t, v, shift)` over `data`, compiled for AVX2 where the path has it.
fn lut_inplace(isa: Isa, (t, shift): (&[i16], u32), data: &mut [i16]) {
    /// At a constant shift, over the table cut to its exact length: every index `(x + 32768) >> S`
    /// and the one after it provably lie in it, so the loop runs without bounds checks (they were most
    /// of a table's time on paths without a vector form).
    #[inline(always)]
    fn fixed<const S: u32>(t: &[i16], data: &mut [i16]) {
        let Some(t) = t.get(..crate::ir::quant::lut16_len(S)) else {
            return; // the loader checked the table's length
        };
        for v in data.iter_mut() {
            *v = lut16(t, *v, S);
        }
    }
    #[inline(always)]
    fn body(t: &[i16], shift: u32, data: &mut [i16]) {
        const _: () = assert!(LUT16_MIN_SHIFT == 4 && LUT16_MAX_SHIFT == 8);
        match shift {
            4 => fixed::<4>(t, data),
            5 => fixed::<5>(t, data),
            6 => fixed::<6>(t, data),
            7 => fixed::<7>(t, data),
            8 => fixed::<8>(t, data),
            _ => {} // (the loader checked the length, hence the shift)
        }
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni)
        && (LUT16_MIN_SHIFT..=LUT16_MAX_SHIFT).contains(&shift)
        && t.len() >= crate::ir::quant::lut16_len(shift)
    {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it; the table and shift
        // were checked just above.
        let done = unsafe { super::kernels::x86::lut16_avx2(t, shift, data) };
        body(t, shift, &mut data[done..]);
        return;
    }
    let _ = isa;
    body(t, shift, data)
}

/// `y = rq(x·W)` row by row ([`gemv16`] per activation row).
fn matmul(m: &Mat16, x: View<i16>, y: ViewMut<i16>) {
    let rq = m.rows.requant(0);
    if m.k == 0 {
        for row in y.data.chunks_exact_mut(m.n.max(1)) {
            for (j, o) in row.iter_mut().enumerate() {
                *o = rq.value(j, 0) as i16;
            }
        }
        return;
    }
    for (xr, yr) in x
        .data
        .chunks_exact(m.k)
        .zip(y.data.chunks_exact_mut(m.n.max(1)))
    {
        gemv16(m.isa, &m.wt, xr, &rq, yr);
    }
}

/// `out[j] = rq(j, Σ_p w[j][p]·x[p])` for `w` row-major (`out.len()` rows of `x.len()`): one i16 dot
/// product per output (the loop vectorizes to `vpmaddwd` / `smlal`; compiled for AVX2 where the path has
/// it). A conv over a 1×1 map (squeeze-excitation) and a matmul's rows.
fn gemv16(isa: Isa, w: &[i16], x: &[i16], rq: &Requant, out: &mut [i16]) {
    #[inline(always)]
    fn body(w: &[i16], x: &[i16], rq: &Requant, out: &mut [i16]) {
        for (j, (wr, o)) in w.chunks_exact(x.len()).zip(out.iter_mut()).enumerate() {
            let dot: i32 = wr.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum();
            *o = rq.value(j, dot) as i16;
        }
    }
    if x.is_empty() {
        return;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni) {
        #[target_feature(enable = "avx2")]
        fn avx2(w: &[i16], x: &[i16], rq: &Requant, out: &mut [i16]) {
            body(w, x, rq, out)
        }
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        unsafe { avx2(w, x, rq, out) };
        return;
    }
    let _ = isa;
    body(w, x, rq, out)
}

/// `out[i] = b.apply(a[i], q)` for a row times one value: a Mul's products (|a·q| ≤ 2^30) requantized
/// in registers (the f32 form on AVX2), else by the row epilogue in chunks on the stack (the vector one
/// where the path has it).
fn mul_row(isa: Isa, b: &Bin16, a: &[i16], q: i16, out: &mut [i16]) {
    if b.op != BinOp::Mul {
        for (o, &p) in out.iter_mut().zip(a) {
            *o = b.apply(p, q);
        }
        return;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if let (Some(f), Isa::Avx2 | Isa::AvxVnni) = (b.fmul, isa) {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        let i = unsafe { super::kernels::x86::mul16_f32_avx2(a, q, (f, b.lo, b.hi), out) };
        for (o, &p) in out[i..].iter_mut().zip(&a[i..]) {
            *o = b.apply(p, q);
        }
        return;
    }
    let rq = Requant {
        bias: &[0],
        mult: core::slice::from_ref(&b.mul),
        zp_out: 0,
        lo: b.lo,
        hi: b.hi,
        fscale: b.fmul.as_slice(),
        hswish: None,
    };
    // (chunks of 256: the row's vector constants are set up once per chunk)
    let mut acc = [0i32; 256];
    for (ac, oc) in a.chunks(256).zip(out.chunks_mut(256)) {
        for (s, &p) in acc.iter_mut().zip(ac) {
            *s = p as i32 * q as i32;
        }
        requant_row16(isa, &rq, 0, &acc[..ac.len()], oc);
    }
}

/// `out[i] = b.apply(x[i], y[i])` for two runs of equal length: Add/Sub 16 at a time on AVX2
/// (`x86::add16_avx2`), the rest (and Mul: a product requantized per element) one by one.
fn pair_row(isa: Isa, b: &Bin16, x: &[i16], y: &[i16], out: &mut [i16]) {
    #[allow(unused_mut)]
    let mut i = 0;
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni) && b.op != BinOp::Mul {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        i = unsafe { super::kernels::x86::add16_avx2(x, y, b.add, (b.lo, b.hi), out) };
    }
    let _ = isa;
    for ((o, &p), &q) in out[i..].iter_mut().zip(&x[i..]).zip(&y[i..]) {
        *o = b.apply(p, q);
    }
}

/// Element-wise Add/Sub/Mul with numpy broadcasting: the output's trailing axes merged while both
/// inputs walk them contiguously or one broadcasts all of them (an SE gate's `[1, C, 1, 1]` over
/// `[1, C, H, W]`: rows of H·W), then row by row with each input's broadcast strides; a row times one
/// value through [`mul_row`], two full rows through [`pair_row`].
fn binary(isa: Isa, b: &Bin16, xa: View<i16>, xb: View<i16>, y: ViewMut<i16>) {
    if xa.data.len() == y.data.len() && xb.data.len() == y.data.len() {
        return pair_row(isa, b, xa.data, xb.data, y.data);
    }
    let r = y.shape.len();
    if r == 0 || r > 8 {
        return; // the loader bounds ranks; a scalar output has equal lengths above
    }
    let (mut sa, mut sb) = ([0usize; 8], [0usize; 8]);
    broadcast_strides(xa.shape, y.shape, 1, &mut sa);
    broadcast_strides(xb.shape, y.shape, 1, &mut sb);
    // merge axis first−1 into the innermost run while each input either steps contiguously across it
    // (its stride there is the run's length, at unit inner stride) or broadcasts it and the run
    let mut first = r - 1;
    let mut inner = y.shape[r - 1];
    let fits = |s: &[usize; 8], d: usize, run: usize| {
        (s[r - 1] == 1 && s[d] == run) || (s[r - 1] == 0 && s[d] == 0)
    };
    while first > 0 && fits(&sa, first - 1, inner) && fits(&sb, first - 1, inner) {
        first -= 1;
        inner *= y.shape[first];
    }
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    if inner == 0 {
        return;
    }
    for (row, out) in y.data.chunks_exact_mut(inner).enumerate() {
        // the row's offsets in a and b
        let (mut oa, mut ob, mut rest) = (0usize, 0usize, row);
        for d in (0..first).rev() {
            let i = rest % y.shape[d];
            rest /= y.shape[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        match (ia, ib) {
            (1, 1) => pair_row(
                isa,
                b,
                &xa.data[oa..oa + inner],
                &xb.data[ob..ob + inner],
                out,
            ),
            (1, _) => mul_row(isa, b, &xa.data[oa..oa + inner], xb.data[ob], out),
            // (Mul commutes; Add/Sub keep their order in `apply`)
            (_, 1) if b.op == BinOp::Mul => {
                mul_row(isa, b, &xb.data[ob..ob + inner], xa.data[oa], out)
            }
            (_, 1) => {
                let p = xa.data[oa];
                for (o, &q) in out.iter_mut().zip(&xb.data[ob..]) {
                    *o = b.apply(p, q);
                }
            }
            _ => out.fill(b.apply(xa.data[oa], xb.data[ob])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::quant::unary16;

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// Rows with `bias` and the rescales `real(i)`: Q31 multipliers, and with `f32` their f32 form; with
    /// `act = Some(d)` a fused HardSwish (k for s_y = 1e-3) on the sums scaled by `real(i) / d`.
    fn test_rows(
        bias: &[i32],
        real: impl Fn(usize) -> f64,
        (f32, act): (bool, Option<f64>),
        (lo, hi): (i32, i32),
    ) -> Rows {
        let m = bias.len();
        Rows {
            bias: bias.to_vec(),
            mult: (0..m)
                .map(|i| FixedMultiplier::from_real(real(i)).unwrap())
                .collect(),
            fscale: match f32 {
                true => (0..m)
                    .map(|i| f32_scale(real(i) / act.unwrap_or(1.0)))
                    .collect(),
                false => Vec::new(),
            },
            hswish: act.map(|_| 1.0 / (6.0 * 1e-3)),
            lo,
            hi,
        }
    }

    /// Every GEMM path equals the plain i64 sum of products, requantized by the scalar rule, over shapes
    /// with row and column tails and odd depths, extreme inputs included.
    #[test]
    fn every_gemm16_path_equals_the_definition() {
        let mut seed = 7u64;
        let isas = crate::cpu::caps::available();
        for &(m, n, k) in &[
            (1, 1, 1),
            (4, 16, 2),
            (5, 17, 3),
            (8, 32, 64),
            (3, 40, 9),
            (13, 35, 27),
            (16, 48, 288),
            (7, 15, 1),
        ] {
            let w: Vec<i8> = (0..m * k).map(|_| lcg(&mut seed) as i8).collect();
            let x: Vec<i16> = (0..k * n)
                .map(|i| match i % 11 {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    _ => lcg(&mut seed) as i16,
                })
                .collect();
            let bias: Vec<i32> = (0..m).map(|_| (lcg(&mut seed) as i32) >> 8).collect();
            let real = |i: usize| 1.0 / (300.0 + 97.0 * i as f64);
            // the Q31 epilogue (formats 10, 11), the f32 one (12 on), and the f32 one with a fused
            // HardSwish (Q16ConvAct: the sums scaled to reals across the kinks)
            for (f32rq, act) in [(false, false), (true, false), (true, true)] {
                let form = (f32rq, act.then_some(1e4));
                let rows = test_rows(&bias, real, form, (-30000, 32767));
                let want: Vec<i16> = (0..m * n)
                    .map(|i| {
                        let (r, j) = (i / n, i % n);
                        let acc: i64 = (0..k)
                            .map(|p| w[r * k + p] as i64 * x[p * n + j] as i64)
                            .sum();
                        rows.requant(0).value(r, acc as i32) as i16
                    })
                    .collect();
                let a = pack_a(m, k, |r, p| w[r * k + p] as i16);
                for &isa in &isas {
                    let mut c = vec![0i16; m * n];
                    // SAFETY: x holds k rows of n, c m rows of n.
                    unsafe {
                        gemm16(
                            isa,
                            (m, n, k),
                            &a,
                            x.as_ptr(),
                            n,
                            c.as_mut_ptr(),
                            n,
                            &rows.requant(0),
                            0..m.div_ceil(MR),
                            None,
                        )
                    };
                    assert_eq!(c, want, "{isa:?} m {m} n {n} k {k} f32 {f32rq} act {act}");
                    let mut out = vec![0i16; n];
                    let acc: Vec<i32> = (0..n).map(|j| (j as i32 - 7) * 99_991).collect();
                    requant_row16(isa, &rows.requant(0), 0, &acc, &mut out);
                    let scalar: Vec<i16> = acc
                        .iter()
                        .map(|&v| rows.requant(0).value(0, v) as i16)
                        .collect();
                    assert_eq!(out, scalar, "{isa:?} row epilogue f32 {f32rq} act {act}");
                }
            }
        }
    }

    /// The definition: every output the i64 sum of the taps inside the input, requantized.
    fn conv_reference(
        geom: &Conv2d,
        x: &[i16],
        xs: [usize; 4],
        w: &[i8],
        ws: [usize; 4],
        rows: &Rows,
        (oh, ow): (usize, usize),
    ) -> Vec<i16> {
        let [nb, c, h, wd] = xs;
        let [m, cg, kh, kw] = ws;
        let mg = m / geom.groups as usize;
        let mut out = vec![0i16; nb * m * oh * ow];
        for b in 0..nb {
            for o in 0..m {
                let gi = o / mg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0i64;
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * geom.strides[0] as usize
                                        + ky * geom.dilations[0] as usize)
                                        as isize
                                        - geom.pads[0] as isize;
                                    let ix = (ox * geom.strides[1] as usize
                                        + kx * geom.dilations[1] as usize)
                                        as isize
                                        - geom.pads[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xv = x[((b * c + gi * cg + ci) * h + iy as usize) * wd
                                        + ix as usize];
                                    acc +=
                                        w[((o * cg + ci) * kh + ky) * kw + kx] as i64 * xv as i64;
                                }
                            }
                        }
                        out[((b * m + o) * oh + oy) * ow + ox] =
                            rows.requant(0).value(o, acc as i32) as i16;
                    }
                }
            }
        }
        out
    }

    /// Pointwise, depthwise (strides, dilation, padding, narrow maps) and im2col convs (grouped, strided)
    /// equal the definition on every path and thread count, bit for bit.
    #[test]
    fn every_conv16_kind_equals_the_definition() {
        #[cfg(feature = "std")]
        let pool = super::super::pool::Pool::new(3).unwrap();
        let pars = [
            Par::single(),
            #[cfg(feature = "std")]
            Par { pool: Some(&pool) },
        ];
        let mut seed = 11u64;
        // (n, c, h, w), m, kernel, strides, dilations, pads, groups
        type Case = (
            [usize; 4],
            usize,
            [u32; 2],
            [u32; 2],
            [u32; 2],
            [u32; 4],
            u32,
        );
        let cases: &[Case] = &[
            ([1, 24, 5, 37], 40, [1, 1], [1, 1], [1, 1], [0; 4], 1),
            ([2, 7, 3, 16], 9, [1, 1], [1, 1], [1, 1], [0; 4], 1),
            ([2, 40, 1, 1], 24, [1, 1], [1, 1], [1, 1], [0; 4], 1),
            ([1, 16, 9, 35], 16, [3, 3], [1, 1], [1, 1], [1; 4], 16),
            ([1, 12, 8, 33], 12, [5, 5], [2, 2], [1, 1], [2; 4], 12),
            ([1, 8, 2, 96], 8, [5, 5], [1, 1], [1, 1], [2; 4], 8),
            ([1, 6, 7, 9], 6, [3, 3], [1, 2], [2, 1], [2, 1, 2, 1], 6),
            ([1, 3, 12, 40], 8, [3, 3], [2, 2], [1, 1], [1; 4], 1),
            ([1, 8, 6, 19], 12, [3, 3], [1, 2], [1, 1], [1, 0, 1, 2], 4),
            ([1, 4, 4, 4], 2, [2, 2], [1, 1], [1, 1], [0; 4], 2),
            ([1, 10, 6, 21], 10, [3, 5], [2, 1], [1, 2], [1, 4, 2, 4], 10),
            // padding wider than the map: taps wholly in the padding (an empty input row too: every
            // output the bias alone)
            ([1, 4, 3, 1], 4, [5, 5], [1, 1], [1, 1], [2; 4], 4),
            ([1, 4, 3, 0], 4, [3, 3], [1, 1], [1, 1], [1, 2, 1, 1], 4),
            ([1, 3, 2, 2], 5, [7, 7], [1, 1], [1, 1], [3; 4], 1),
            ([1, 2, 20, 2], 2, [3, 7], [1, 1], [1, 1], [1, 3, 1, 3], 2),
            ([1, 5, 3, 40], 5, [4, 2], [1, 1], [2, 3], [3, 0, 1, 2], 5),
            // im2col in blocks of output pixels (k 288: 448 a block), the second partial, a block edge
            // inside an output row, with groups and a stride
            ([2, 32, 24, 25], 6, [3, 3], [1, 1], [1, 1], [1; 4], 1),
            ([1, 64, 45, 47], 4, [3, 3], [2, 1], [1, 1], [1, 0, 1, 2], 2),
        ];
        for &(xs, m, kernel, strides, dilations, pads, groups) in cases {
            let geom = Conv2d {
                kernel,
                strides,
                dilations,
                pads,
                groups,
                output_padding: [0, 0],
            };
            let cg = xs[1] / groups as usize;
            let ws = [m, cg, kernel[0] as usize, kernel[1] as usize];
            let w: Vec<i8> = (0..ws.iter().product::<usize>())
                .map(|_| ((lcg(&mut seed) % 255) as i32 - 127) as i8)
                .collect();
            let x: Vec<i16> = (0..xs.iter().product::<usize>())
                .map(|i| {
                    if i % 13 == 0 {
                        i16::MIN
                    } else {
                        lcg(&mut seed) as i16
                    }
                })
                .collect();
            let bias: Vec<i32> = (0..m).map(|_| (lcg(&mut seed) as i32) >> 12).collect();
            let real = |i: usize| 1.0 / (90.0 + 31.0 * i as f64);
            // the Q31 epilogue (formats 10, 11) and the f32 one (12 on), with a fused HardSwish
            // (Q16ConvAct) where no table is (odd m): its sums scaled to reals across the kinks
            for f32rq in [false, true] {
                let act = f32rq && m % 2 == 1;
                let rows = test_rows(&bias, real, (f32rq, act.then_some(3e3)), (-32768, 20000));
                let out = |a: usize| {
                    let (k, s, d) = (
                        kernel[a] as usize,
                        strides[a] as usize,
                        dilations[a] as usize,
                    );
                    (xs[2 + a] + pads[a] as usize + pads[a + 2] as usize - d * (k - 1) - 1) / s + 1
                };
                let (oh, ow) = (out(0), out(1));
                let want = conv_reference(&geom, &x, xs, &w, ws, &rows, (oh, ow));
                // (every path this CPU has: the AVX2 and VNNI forms of the tap blocks)
                for isa in crate::cpu::caps::available() {
                    let rq = Rows {
                        bias: rows.bias.clone(),
                        mult: rows.mult.clone(),
                        fscale: rows.fscale.clone(),
                        hswish: rows.hswish,
                        lo: rows.lo,
                        hi: rows.hi,
                    };
                    let mut conv = Conv16::from_parts(isa, &geom, (&w, ws), rq);
                    if xs[2] * xs[3] == 1 && conv.kind == ConvKind::Pointwise {
                        // (what prepare adds for a conv over a 1×1 map)
                        conv.rowmajor = w.iter().map(|&v| v as i16).collect();
                    }
                    // every other case with a fused function (a bumpy one: every entry matters)
                    let fused = m % 2 == 0;
                    if fused {
                        // (a finer table on every other fused case)
                        conv.table_shift = if m % 4 == 0 { 6 } else { LUT16_MAX_SHIFT };
                        conv.table = (0..crate::ir::quant::lut16_len(conv.table_shift))
                            .map(|j| ((j * j * 37) % 65536) as u16 as i16)
                            .collect();
                    }
                    let want: Vec<i16> = if fused {
                        want.iter()
                            .map(|&v| lut16(&conv.table, v, conv.table_shift))
                            .collect()
                    } else {
                        want.clone()
                    };
                    let ys = [xs[0], m, oh, ow];
                    for par in &pars {
                        let mut scratch =
                            vec![0u32; conv.scratch_bytes(&xs, &ys, par.threads()).div_ceil(4)];
                        // SAFETY: u32 as bytes.
                        let bytes = unsafe {
                            core::slice::from_raw_parts_mut(
                                scratch.as_mut_ptr() as *mut u8,
                                scratch.len() * 4,
                            )
                        };
                        let mut y = vec![0i16; ys.iter().product()];
                        conv.run(
                            par,
                            View {
                                data: &x,
                                shape: &xs,
                            },
                            ViewMut {
                                data: &mut y,
                                shape: &ys,
                            },
                            bytes,
                        );
                        assert_eq!(
                            y,
                            want,
                            "{isa:?} {:?} threads {} f32 {f32rq}",
                            conv.kind,
                            par.threads()
                        );
                    }
                }
            }
        }
    }

    /// Requantize between every pair of widths (up and down by large and small factors, zero points both
    /// ways) equals `clamp(z_y + m.apply(x − z_x))` on every int8 input and every int16 input, on every
    /// path.
    #[test]
    fn rescale_paths_equal_the_rule() {
        let cases = [
            ((0.05f32, 3, false), (0.0004f32, 0, true)),
            ((0.0004, 0, true), (0.05, -7, false)),
            ((0.002, 0, true), (0.0007, 0, true)),
            ((0.1, -128, false), (0.03, 127, false)),
            ((0.001, 0, true), (3.0, 0, true)),
        ];
        let x8: Vec<i8> = (-128..=127).collect();
        let x16: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for ((sx, zx, a16), (sy, zy, b16)) in cases {
            let r = Rescale::new((sx, zx, a16), (sy, zy, b16));
            let m = FixedMultiplier::from_real(sx as f64 / sy as f64).unwrap();
            let (lo, hi) = if b16 { (-32768, 32767) } else { (-128, 127) };
            let xs: Vec<i32> = if a16 {
                x16.iter().map(|&v| v as i32).collect()
            } else {
                x8.iter().map(|&v| v as i32).collect()
            };
            let want: Vec<i32> = xs
                .iter()
                .map(|&v| (zy + m.apply(v - zx)).clamp(lo, hi))
                .collect();
            for isa in [Isa::Scalar, super::super::caps::detect()] {
                let n = xs.len();
                let (mut y8, mut y16) = (vec![0i8; n], vec![0i16; n]);
                let shape = [n];
                let mut q = [ViewMut {
                    data: if b16 { &mut [][..] } else { &mut y8[..] },
                    shape: &shape,
                }];
                let mut h = [ViewMut {
                    data: if b16 { &mut y16[..] } else { &mut [][..] },
                    shape: &shape,
                }];
                let ins = if a16 {
                    (&[][..], &x16[..])
                } else {
                    (&x8[..], &[][..])
                };
                rescale(isa, &r, ins, &mut q, &mut h);
                let got: Vec<i32> = if b16 {
                    y16.iter().map(|&v| v as i32).collect()
                } else {
                    y8.iter().map(|&v| v as i32).collect()
                };
                assert_eq!(got, want, "{isa:?} {sx}/{zx} -> {sy}/{zy}");
            }
        }
    }

    /// f32 → int16 on every path equals `quantize_f32_i16`: ties both ways, the int16 limits, far past
    /// them, infinities, NaN, tiny values, and a sweep.
    #[test]
    fn quantize16_paths_equal_the_rule() {
        let mut x: Vec<f32> = vec![
            0.5,
            -0.5,
            1.5,
            -2.5,
            32767.0,
            32767.5,
            32768.0,
            -32768.5,
            -40000.0,
            1e9,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40,
            -0.0,
            65535.5,
            4_194_303.5,
        ];
        let mut seed = 11u64;
        x.extend((0..4000).map(|_| (lcg(&mut seed) as i32 as f32) / 3.0e4));
        for s in [1.0f32, 0.25, 3.7e-3] {
            let want: Vec<i16> = x.iter().map(|&v| quantize_f32_i16(v, s)).collect();
            for isa in [Isa::Scalar, super::super::caps::detect()] {
                let mut y = vec![0i16; x.len()];
                quantize16(isa, &x, s, &mut y);
                assert_eq!(y, want, "{isa:?} scale {s}");
            }
        }
    }

    /// The table lookup on every path equals `lut16` over every int16 input.
    #[test]
    fn lut16_paths_equal_the_rule() {
        let mut seed = 3u64;
        for shift in LUT16_MIN_SHIFT..=LUT16_MAX_SHIFT {
            let t: Vec<i16> = (0..crate::ir::quant::lut16_len(shift))
                .map(|_| lcg(&mut seed) as i16)
                .collect();
            let x: Vec<i16> = (i16::MIN..=i16::MAX).chain([5, -7, 300]).collect();
            let want: Vec<i16> = x.iter().map(|&v| lut16(&t, v, shift)).collect();
            for isa in [Isa::Scalar, super::super::caps::detect()] {
                let mut y = vec![0i16; x.len()];
                lut_slice(isa, (&t, shift), &x, &mut y);
                assert_eq!(y, want, "{isa:?} shift {shift}");
            }
        }
    }

    /// HardSwish in f32 on every path equals `unary16` on every int16 input, at scales that put the kink
    /// mid-range and the output near saturation.
    #[test]
    fn unary16_paths_equal_the_rule() {
        let x: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for (sx, sy) in [(6e-4f32, 4e-4f32), (1e-4, 1.1e-4), (0.01, 0.002)] {
            let p = unary16_params(&crate::ir::Unary::HardSwish, sx, sy).unwrap();
            let want: Vec<i16> = x.iter().map(|&v| unary16(v, p)).collect();
            for isa in crate::cpu::caps::available() {
                // (an odd length: the vector paths' tails)
                let mut y = vec![0i16; x.len() - 3];
                unary_slice(isa, p, &x[3..], &mut y);
                assert_eq!(y, want[3..], "{isa:?} scales {sx} {sy}");
            }
        }
    }

    /// Add, Sub and Mul over broadcast patterns (equal shapes, an SE gate either side, a row, a scalar)
    /// equal `Bin16::apply` at each output's broadcast inputs, on every path, extremes included.
    #[test]
    fn binary16_broadcasts_equal_apply() {
        let mut seed = 5u64;
        let shapes: &[(&[usize], &[usize])] = &[
            (&[1, 6, 3, 37], &[1, 6, 3, 37]),
            (&[1, 6, 3, 37], &[1, 6, 1, 1]),
            (&[1, 6, 1, 1], &[1, 6, 3, 37]),
            (&[2, 5, 4, 19], &[1, 1, 1, 19]),
            (&[2, 5, 4, 19], &[1]),
            (&[3, 1, 33], &[3, 7, 1]),
        ];
        // (Mul in the Q31 form and the f32 one, format 12 on)
        for (op, f32rq) in [
            (BinOp::Add, false),
            (BinOp::Sub, false),
            (BinOp::Mul, false),
            (BinOp::Mul, true),
        ] {
            for &(ash, bsh) in shapes {
                let ysh: Vec<usize> = {
                    let r = ash.len().max(bsh.len());
                    (0..r)
                        .map(|i| {
                            let g = |s: &[usize]| s.len().checked_sub(r - i).map_or(1, |k| s[k]);
                            g(ash).max(g(bsh))
                        })
                        .collect()
                };
                let gen = |n: usize, seed: &mut u64| -> Vec<i16> {
                    (0..n)
                        .map(|i| match i % 9 {
                            0 => i16::MIN,
                            1 => i16::MAX,
                            _ => lcg(seed) as i16,
                        })
                        .collect()
                };
                let a = gen(ash.iter().product(), &mut seed);
                let bv = gen(bsh.iter().product(), &mut seed);
                let (sa, sb, sy) = (0.013f64, 0.021f64, 0.02f64);
                let add = add16_params(sa / sy, sb / sy).unwrap();
                let b = Bin16 {
                    op,
                    add: if op == BinOp::Sub {
                        (add.0, -add.1, add.2)
                    } else {
                        add
                    },
                    mul: FixedMultiplier::from_real(sa * sb / sy * 1e-3).unwrap(),
                    fmul: f32rq.then(|| f32_scale(sa * sb / sy * 1e-3)),
                    lo: -30000,
                    hi: 32767,
                };
                let at = |sh: &[usize], idx: &[usize]| {
                    let off = idx.len() - sh.len();
                    sh.iter().enumerate().fold(0, |acc, (d, &n)| {
                        acc * n + if n == 1 { 0 } else { idx[off + d] }
                    })
                };
                let n: usize = ysh.iter().product();
                let want: Vec<i16> = (0..n)
                    .map(|i| {
                        let mut idx = vec![0; ysh.len()];
                        let mut rest = i;
                        for d in (0..ysh.len()).rev() {
                            idx[d] = rest % ysh[d];
                            rest /= ysh[d];
                        }
                        b.apply(a[at(ash, &idx)], bv[at(bsh, &idx)])
                    })
                    .collect();
                for isa in [Isa::Scalar, super::super::caps::detect()] {
                    let mut y = vec![0i16; n];
                    binary(
                        isa,
                        &b,
                        View {
                            data: &a,
                            shape: ash,
                        },
                        View {
                            data: &bv,
                            shape: bsh,
                        },
                        ViewMut {
                            data: &mut y,
                            shape: &ysh,
                        },
                    );
                    assert_eq!(y, want, "{op:?} {ash:?} {bsh:?} {isa:?} f32 {f32rq}");
                }
            }
        }
    }

    #[test]
    fn valid_range_covers_exactly_the_taps_inside() {
        for off in -4isize..4 {
            for s in 1isize..4 {
                for w in 0usize..9 {
                    for ow in 0usize..9 {
                        let (lo, hi) = valid_range(off, s, w, ow);
                        for ox in 0..ow {
                            let t = ox as isize * s + off;
                            let inside = t >= 0 && t < w as isize;
                            assert_eq!(
                                inside,
                                (lo..hi).contains(&ox),
                                "off {off} s {s} w {w} ox {ox}"
                            );
                        }
                    }
                }
            }
        }
    }
}
