//! The integer engine: int8 ops and the float/int8 boundaries. Every op here is integer arithmetic from
//! its int8 inputs to its int8 output (requantization by [`FixedMultiplier`], round half away from zero),
//! so every backend that follows these definitions produces the same integers.
use super::{broadcast_strides, layout, pool, split_into, View, ViewMut};
use crate::cpu::qconv::QConv;
use crate::cpu::qgemm::{self, QGemm, Requant};
use crate::cpu::{share, Par};
use crate::ir::quant::{dequantize_i8, quantize_f32, FixedMultiplier};
use crate::ir::{BinOp, DType, Node, Op, PadMode, Pool2d, PoolKind, ResizeMode};
use crate::model::Model;
use alloc::vec::Vec;

/// `y = zy + M·(x − zx)`: int8 values moved to another tensor's parameters. An int8 input has 256
/// values, so the rule is tabulated once (the same integers, one load per element).
#[derive(Clone, Debug)]
pub struct Rescale {
    pub(crate) table: [i8; 256],
}

impl Rescale {
    fn new((sx, zx): (f32, i32), (sy, zy): (f32, i32)) -> Rescale {
        let m = mult(sx as f64 / sy as f64);
        let mut table = [0i8; 256];
        for (i, t) in table.iter_mut().enumerate() {
            *t = (m.apply(i as i32 - 128 - zx) + zy).clamp(-128, 127) as i8;
        }
        Rescale { table }
    }
    /// The rescaled value.
    #[inline]
    pub fn apply(&self, q: i8) -> i8 {
        self.table[(q as i32 + 128) as usize]
    }
}

/// Integer Add/Sub/Mul. Add/Sub: each operand is moved to the output scale with 16 extra fraction bits
/// (`round(M_a·(a − za)·2^16)`, tabulated per operand value), the two are summed and rounded half away
/// from zero. Mul: the product `(a − za)(b − zb)` is requantized once by `M = s_a·s_b / s_y`.
#[derive(Clone, Debug)]
pub struct QBin {
    pub(crate) op: BinOp,
    pub(crate) za: i32,
    pub(crate) zb: i32,
    pub(crate) zy: i32,
    pub(crate) m: FixedMultiplier,
    /// Add/Sub: each operand's multiplier to the output scale (the tables are `m.apply((v − z) << 16)`);
    /// read by the vector paths, which compute instead of looking up.
    ma: FixedMultiplier,
    mb: FixedMultiplier,
    pub(crate) ta: [i32; 256],
    pub(crate) tb: [i32; 256],
    pub(crate) lo: i32,
    pub(crate) hi: i32,
    /// Add/Sub computed in vectors (AVX-512, AVX2 or NEON: chosen once by [`QBin::with_isa`]), where the
    /// table sums provably stay inside i32 and both multipliers have the vector form.
    add_kernel: Option<AddKernel>,
    /// Add/Sub through the tables with AVX2 gathers (multipliers without the vector form).
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    add_tables_avx2: bool,
    /// The kernel path (Mul's products requantize through its vector epilogue).
    isa: crate::cpu::caps::Isa,
}

/// A vector Add/Sub kernel: `((m_a, z_a), (m_b, z_b), subtract, (z_y, lo, hi), a, b, out)` → elements
/// written (the same integers as [`QBin::apply`]).
type AddKernel = unsafe fn(
    (FixedMultiplier, i32),
    (FixedMultiplier, i32),
    bool,
    (i32, i32, i32),
    &[i8],
    &[i8],
    &mut [i8],
) -> usize;

/// Fraction bits the operands of an integer Add keep before the final rounding.
pub const ADD_FRAC: u32 = 16;

impl QBin {
    fn new(
        op: BinOp,
        (sa, za): (f32, i32),
        (sb, zb): (f32, i32),
        (sy, zy): (f32, i32),
        lo: i32,
        hi: i32,
    ) -> QBin {
        let (mut ta, mut tb) = ([0i32; 256], [0i32; 256]);
        let (ma, mb) = (mult(sa as f64 / sy as f64), mult(sb as f64 / sy as f64));
        let m = if op == BinOp::Mul {
            mult(sa as f64 * sb as f64 / sy as f64)
        } else {
            for i in 0..256 {
                let v = i as i32 - 128;
                ta[i] = ma.apply((v - za) << ADD_FRAC);
                tb[i] = mb.apply((v - zb) << ADD_FRAC);
            }
            mult(0.0)
        };
        QBin {
            add_kernel: None,
            add_tables_avx2: false,
            isa: crate::cpu::caps::Isa::Scalar,
            ma,
            mb,
            op,
            za,
            zb,
            zy,
            m,
            ta,
            tb,
            lo,
            hi,
        }
    }

    /// The integer rule of a `QBinary` node of `model` (its operands' and output's parameters, its clamp);
    /// `None` for any other op. Public so that exporters can write the same integers (`tern export
    /// --onnx-qdq`).
    pub fn for_node(model: &Model, n: &Node) -> Option<QBin> {
        let Op::QBinary { op, lo, hi } = n.op else {
            return None;
        };
        let (&a, &b, &y) = (n.inputs.first()?, n.inputs.get(1)?, n.outputs.first()?);
        Some(QBin::new(
            op,
            params(model, a),
            params(model, b),
            params(model, y),
            lo as i32,
            hi as i32,
        ))
    }

    /// The operation (Add, Sub or Mul).
    pub fn op(&self) -> BinOp {
        self.op
    }

    /// The zero points of the operands and of the output, `(z_a, z_b, z_y)`.
    pub fn zero_points(&self) -> (i32, i32, i32) {
        (self.za, self.zb, self.zy)
    }

    /// The output clamp `(lo, hi)` (int8 values; a fused Relu/Clip narrows it).
    pub fn clamp(&self) -> (i32, i32) {
        (self.lo, self.hi)
    }

    /// Add/Sub: each operand's table, indexed by `v + 128`: the operand moved to the output scale with
    /// [`ADD_FRAC`] fraction bits. The op's value is `round_half_away(t_a[a] ± t_b[b] / 2^ADD_FRAC)`
    /// (sum in 64 bits, result clamped to i32), then `+ z_y` saturating and clamped to [`QBin::clamp`].
    pub fn add_tables(&self) -> (&[i32; 256], &[i32; 256]) {
        (&self.ta, &self.tb)
    }

    /// Mul: the multiplier of the integer product, `m.apply((a − z_a)(b − z_b))`, then `+ z_y` saturating
    /// and clamped to [`QBin::clamp`].
    pub fn mul_multiplier(&self) -> FixedMultiplier {
        self.m
    }

    /// Add/Sub: whether any two table entries sum (with the rounding half) inside i32, so 32-bit lanes
    /// give [`QBin::apply`]'s integers.
    fn sums_fit(&self) -> bool {
        let amax = |t: &[i32; 256]| t.iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
        amax(&self.ta) + amax(&self.tb) + (1 << ADD_FRAC) < i32::MAX as u64
    }

    /// Enables the instruction-set path `isa` for Add/Sub where it has one and the sums fit i32.
    fn with_isa(mut self, isa: crate::cpu::caps::Isa) -> QBin {
        self.isa = isa;
        let fits = self.op != BinOp::Mul && self.sums_fit();
        let vec = |m: FixedMultiplier| (0..=31).contains(&m.shift);
        let computed = fits && vec(self.ma) && vec(self.mb);
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if matches!(
            isa,
            crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
        ) {
            use crate::cpu::kernels::x86;
            let k: AddKernel = if wide_path(isa) {
                x86::qadd_arith_avx512
            } else {
                x86::qadd_arith_avx2
            };
            self.add_kernel = computed.then_some(k);
            self.add_tables_avx2 = fits && !computed;
        }
        #[cfg(target_arch = "aarch64")]
        if isa != crate::cpu::caps::Isa::Scalar {
            let k: AddKernel = crate::cpu::kernels::neon::qadd_neon;
            self.add_kernel = computed.then_some(k);
        }
        let _ = computed;
        self
    }

    /// Mul's epilogue as a one-row [`crate::cpu::qgemm::Requant`].
    fn mul_requant(&self) -> crate::cpu::qgemm::Requant<'_> {
        crate::cpu::qgemm::Requant {
            bias: &[0],
            mult: core::slice::from_ref(&self.m),
            zp_out: self.zy,
            lo: self.lo,
            hi: self.hi,
            fscale: &[],
            hswish: None,
        }
    }

    /// `out[i] = m.apply(product(i)) + zy`, clamped, for `out.len()` products, requantized 256 at a time
    /// through the path's vector epilogue (the same integers as [`QBin::apply`]'s Mul).
    fn requant_products(&self, product: impl Fn(usize) -> i32, out: &mut [i8]) {
        let rq = self.mul_requant();
        let mut acc = [0i32; 256];
        for (c, dst) in out.chunks_mut(256).enumerate() {
            for (i, o) in acc[..dst.len()].iter_mut().enumerate() {
                *o = product(256 * c + i);
            }
            crate::cpu::qgemm::requant_row(self.isa, &rq, 0, &acc[..dst.len()], dst);
        }
    }

    /// Mul with one operand fixed along the row: `a` varies (zero point `za`), the other is `b` (zero
    /// point `zb`; Mul commutes, so either operand of the node can be `a`). The integer products, then the
    /// path's vector requant (the same integers as [`QBin::apply`]: `m.apply(product) + zy`, clamped).
    fn mul_rows(&self, (a, za): (&[i8], i32), (b, zb): (i8, i32), out: &mut [i8]) {
        let qb = b as i32 - zb;
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if matches!(
            self.isa,
            crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
        ) {
            let rq = self.mul_requant();
            // SAFETY: the session only selects an AVX2 path on a CPU that has it; wide_path checks
            // AVX-512 F/BW.
            return unsafe {
                if wide_path(self.isa) {
                    crate::cpu::kernels::x86::scale_row512(&rq, 0, (a, za, qb), out)
                } else {
                    crate::cpu::kernels::x86::scale_row_avx2(&rq, 0, (a, za, qb), out)
                }
            };
        }
        #[cfg(target_arch = "aarch64")]
        if self.isa != crate::cpu::caps::Isa::Scalar {
            // SAFETY: NEON is part of aarch64; zero points are int8 and |qb| ≤ 255.
            return unsafe {
                crate::cpu::kernels::neon::scale_row_neon(&self.mul_requant(), 0, (a, za, qb), out)
            };
        }
        let n = a.len().min(out.len());
        self.requant_products(|i| (a[i] as i32 - za) * qb, &mut out[..n]);
    }

    /// `out[i] = apply(a[i], b[i])`, vectorized where the path allows.
    fn apply_rows(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        let done = self.apply_rows_simd(a, b, out);
        for ((o, &p), &q) in out[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
            *o = self.apply(p, q);
        }
    }

    /// The SIMD prefix of [`QBin::apply_rows`]; returns how many elements it wrote.
    fn apply_rows_simd(&self, a: &[i8], b: &[i8], out: &mut [i8]) -> usize {
        let n = a.len().min(b.len()).min(out.len());
        if self.op == BinOp::Mul {
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if matches!(
                self.isa,
                crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
            ) {
                // SAFETY: the session only selects an AVX2 path on a CPU that has it.
                return unsafe {
                    crate::cpu::kernels::x86::mul_rows_avx2(
                        &self.mul_requant(),
                        (self.za, self.zb),
                        a,
                        b,
                        out,
                    )
                };
            }
            if self.isa == crate::cpu::caps::Isa::Scalar {
                return 0;
            }
            // the products (exact: |p| ≤ 255²), then the path's vector epilogue (NEON)
            let (za, zb) = (self.za, self.zb);
            let product = |i: usize| (a[i] as i32 - za) * (b[i] as i32 - zb);
            self.requant_products(product, &mut out[..n]);
            return n;
        }
        if let Some(k) = self.add_kernel {
            // SAFETY: with_isa chose the kernel for this CPU's path; the sums fit i32 and both
            // multipliers have the vector form.
            return unsafe {
                k(
                    (self.ma, self.za),
                    (self.mb, self.zb),
                    self.op == BinOp::Sub,
                    (self.zy, self.lo, self.hi),
                    a,
                    b,
                    out,
                )
            };
        }
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if self.add_tables_avx2 {
            // SAFETY: set only on the AVX2 paths (with_isa); the tables' sums fit i32.
            return unsafe {
                crate::cpu::kernels::x86::qadd_avx2(
                    &self.ta,
                    &self.tb,
                    self.op == BinOp::Sub,
                    (self.zy, self.lo, self.hi),
                    a,
                    b,
                    out,
                )
            };
        }
        0
    }

    /// The scalar definition of the op on one pair.
    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let v = match self.op {
            BinOp::Mul => self.m.apply((a as i32 - self.za) * (b as i32 - self.zb)),
            _ => {
                let ta = self.ta[(a as i32 + 128) as usize] as i64;
                let tb = self.tb[(b as i32 + 128) as usize] as i64;
                let s = if self.op == BinOp::Sub {
                    ta - tb
                } else {
                    ta + tb
                };
                let r = (s + (1i64 << (ADD_FRAC - 1)) - (s < 0) as i64) >> ADD_FRAC;
                r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
            }
        };
        v.saturating_add(self.zy).clamp(self.lo, self.hi) as i8
    }
}

/// An integer matmul prepared once: W^T packed as the A operand, folded bias and multipliers per column.
pub struct QMat {
    /// The kernel `a` is packed for.
    g: QGemm,
    /// W^T packed as A panels (the GEMM path: rows = output columns).
    a: Vec<i8>,
    /// W^T for the matrix-vector path (a few activation rows): row-major `n×k`, or, where `gemv_panels`,
    /// as 16-row A panels (`x86::qgemv_vnni512`, `neon::qgemv_sdot`, `neon::qgemv_smull`).
    wt: Vec<i8>,
    /// `wt` holds 16-row panels (AVX512-VNNI and aarch64 CPUs); those paths' bias is `bias` (the GEMM
    /// kernel's activation offset: 128 for `vpdpbusd`, none on NEON).
    #[cfg_attr(
        not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64")),
        allow(dead_code)
    )]
    gemv_panels: bool,
    /// Bias folded for the GEMM kernel's activation offset (also the packed matrix-vector path's).
    bias: Vec<i32>,
    /// Bias folded for no offset (the row-major matrix-vector path, and an empty reduction).
    bias_gemv: Vec<i32>,
    pub(crate) mult: Vec<FixedMultiplier>,
    pub(crate) zy: i32,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
    k: usize,
    n: usize,
}

/// Per-node integer state built at session creation.
pub enum QPrep {
    /// f32 → int8 with (scale, zero point) on a kernel path.
    Quantize(f32, i32, crate::cpu::caps::Isa),
    /// int8 → f32 with (scale, zero point).
    Dequantize(f32, i32),
    /// Integer convolution and its output clamp.
    Conv(alloc::boxed::Box<QConv>, i32, i32),
    /// Integer matmul.
    MatMul(QMat),
    /// Integer transposed convolution with kernel = stride: a 1×1 convolution to (channel, ky, kx) rows,
    /// then each row scattered to its strided output positions; with (lo, hi, kh, kw).
    ConvT(alloc::boxed::Box<QConv>, i32, i32, usize, usize),
    /// Integer element-wise binary op.
    Binary(alloc::boxed::Box<QBin>),
    /// 256-entry tables indexed by `x + 128`: one for the tensor, or one per channel (axis 1) of a
    /// channel-scaled input or output; whether to look them up vectorized (`vector_lut`).
    Lut(Vec<[i8; 256]>, bool),
    /// Per input: the rescale to the output's parameters, `None` where they already agree; whether the
    /// rescale tables are looked up vectorized (`vector_lut`).
    Concat(Vec<Option<Rescale>>, bool),
    /// Average pooling: input/output zero points and the multiplier for every possible divisor.
    Avg(i32, i32, Vec<FixedMultiplier>),
    /// Max pooling, global max, Reshape, Transpose, Split: values move unchanged.
    Move,
    /// Slice, Pad, nearest Resize: index maps and the int8 fill value.
    Gather(layout::GatherMaps, i8),
}

fn mult(real: f64) -> FixedMultiplier {
    // the loader proved every multiplier of a valid model encodable
    FixedMultiplier::from_real(real).unwrap_or(FixedMultiplier { mult: 0, shift: 0 })
}

pub(crate) fn params(model: &Model, t: u32) -> (f32, i32) {
    let q = model.graph.tensors[t as usize].quant.as_ref();
    q.map_or((1.0, 0), |q| (q.scale[0], q.zero_point[0]))
}

/// A QConv input's or output's scales (one, or one per channel for a channel-scaled tensor) and zero point.
fn qscales<'a>(model: &'a Model<'a>, t: u32) -> (&'a [f32], i32) {
    match model.graph.tensors[t as usize].quant.as_ref() {
        Some(q) => (&q.scale, q.zero_point[0]),
        None => (&[1.0], 0),
    }
}

/// The bytes of an int8 constant as `i8`.
pub fn i8s(bytes: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const i8, bytes.len()) }
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// An int8 Add/Sub node whose operand tables sum inside i32 (what a 32-bit-lane kernel, such as the
/// GPU's, needs); `true` for Mul and other ops.
pub fn add_sums_fit(model: &Model, n: &Node) -> bool {
    match &n.op {
        Op::QBinary { op, lo, hi } if *op != BinOp::Mul => QBin::new(
            *op,
            params(model, n.inputs[0]),
            params(model, n.inputs[1]),
            params(model, n.outputs[0]),
            *lo as i32,
            *hi as i32,
        )
        .sums_fit(),
        _ => true,
    }
}

/// Whether node `n` is a float Conv that writes int8 (format 9): a pointwise conv computed in f32 over
/// bands of pixels, each band quantized into the output as a Quantize would (`conv::run_pointwise_q`),
/// so the f32 output tensor never exists.
pub fn float_conv_to_int8(model: &Model, n: &Node) -> bool {
    matches!(n.op, Op::Conv { .. }) && model.graph.tensors[n.outputs[0] as usize].dtype == DType::I8
}

/// Whether node `n` runs on the integer engine (a float conv writing int8, [`float_conv_to_int8`], is a
/// float op that quantizes its own output: not).
pub fn is_integer(model: &Model, n: &Node) -> bool {
    matches!(
        n.op,
        Op::Quantize
            | Op::Dequantize
            | Op::QConv { .. }
            | Op::QMatMul { .. }
            | Op::QBinary { .. }
            | Op::QLut
            | Op::QConvTranspose { .. }
    ) || (model.graph.tensors[n.outputs[0] as usize].dtype == DType::I8
        && !float_conv_to_int8(model, n))
}

/// Prepares an integer node (the loader validated types, parameters and multipliers).
pub fn prepare(qg: &QGemm, model: &Model, n: &Node, shapes: &[Vec<usize>]) -> QPrep {
    let g = &model.graph;
    let (x, y) = (n.inputs[0], n.outputs[0]);
    let shape = |t: u32| shapes[t as usize].as_slice();
    match &n.op {
        Op::Quantize => {
            let (s, z) = params(model, y);
            QPrep::Quantize(s, z, qg.isa)
        }
        Op::Dequantize => {
            let (s, z) = params(model, x);
            QPrep::Dequantize(s, z)
        }
        Op::QConv { geom, lo, hi } => {
            let ws = conv_weight_scales(model, n);
            let bias = n
                .inputs
                .get(2)
                .map(|&b| i32s(model.const_bytes(b as usize)));
            let s = shape(n.inputs[1]);
            let conv = QConv::new(
                qg,
                geom.clone(),
                i8s(model.const_bytes(n.inputs[1] as usize)),
                [s[0], s[1], s[2], s[3]],
                &ws,
                bias.as_deref(),
                qscales(model, x),
                qscales(model, y),
            );
            match conv {
                Some(mut c) => {
                    c.build_tables(*lo as i32, *hi as i32);
                    QPrep::Conv(alloc::boxed::Box::new(c), *lo as i32, *hi as i32)
                }
                None => QPrep::Move, // unreachable for a validated model
            }
        }
        Op::QConvTranspose { lo, hi, .. } => {
            let wt = &g.tensors[n.inputs[1] as usize];
            let s = shape(n.inputs[1]);
            let (c, m, kh, kw) = (s[0], s[1], s[2], s[3]);
            let w = i8s(model.const_bytes(n.inputs[1] as usize));
            let ws = wt.quant.as_ref().map_or(&[][..], |q| &q.scale);
            let rows = m * kh * kw;
            // row (mo, ky, kx) of the 1×1 conv holds w[., mo, ky, kx]
            let wr: Vec<i8> = (0..rows * c)
                .map(|i| {
                    let (r, ci) = (i / c, i % c);
                    let (mo, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                    w[((ci * m + mo) * kh + ky) * kw + kx]
                })
                .collect();
            let scales: Vec<f32> = (0..rows)
                .map(|r| ws[if ws.len() == 1 { 0 } else { r / (kh * kw) }])
                .collect();
            let bias: Option<Vec<i32>> = n.inputs.get(2).map(|&b| {
                let b = i32s(model.const_bytes(b as usize));
                (0..rows).map(|r| b[r / (kh * kw)]).collect()
            });
            let one = crate::ir::Conv2d::pointwise(1);
            match QConv::new(
                qg,
                one,
                &wr,
                [rows, c, 1, 1],
                &scales,
                bias.as_deref(),
                qscales(model, x),
                qscales(model, y),
            ) {
                Some(cv) => {
                    QPrep::ConvT(alloc::boxed::Box::new(cv), *lo as i32, *hi as i32, kh, kw)
                }
                None => QPrep::Move, // unreachable for a validated model
            }
        }
        Op::QMatMul { lo, hi } => {
            let wt = &g.tensors[n.inputs[1] as usize];
            let (k, nn) = (wt.shape[0] as usize, wt.shape[1] as usize);
            let w = i8s(model.const_bytes(n.inputs[1] as usize));
            let (zx, zy) = (params(model, x).1, params(model, y).1);
            let bias: Vec<i32> = match n.inputs.get(2) {
                Some(&b) => i32s(model.const_bytes(b as usize)),
                None => alloc::vec![0; nn],
            };
            let wt_rows: Vec<i8> = (0..nn * k).map(|i| w[(i % k) * nn + i / k]).collect();
            let qg = &qg.for_weights(&wt_rows);
            let a = qg.pack_a(nn, k, |i, p| wt_rows[i * k + p]);
            let folded = qg.fold_bias(&bias, &wt_rows, k, zx);
            let bias_gemv =
                qgemm::qgemm_for(crate::cpu::caps::Isa::Scalar).fold_bias(&bias, &wt_rows, k, zx);
            let (wt, gemv_panels) = gemv_weights(qg, wt_rows, nn, k);
            QPrep::MatMul(QMat {
                g: *qg,
                a,
                bias: folded,
                bias_gemv,
                wt,
                gemv_panels,
                mult: matmul_multipliers(model, n),
                zy,
                lo: *lo as i32,
                hi: *hi as i32,
                k,
                n: nn,
            })
        }
        Op::QBinary { .. } => match QBin::for_node(model, n) {
            Some(b) => QPrep::Binary(alloc::boxed::Box::new(b.with_isa(qg.isa))),
            None => QPrep::Move, // unreachable: the node is a QBinary
        },
        Op::QLut => {
            let tables = i8s(model.const_bytes(n.inputs[1] as usize))
                .chunks_exact(256)
                .map(|c| {
                    let mut t = [0i8; 256];
                    t.copy_from_slice(c);
                    t
                })
                .collect();
            QPrep::Lut(tables, vector_lut(qg.isa))
        }
        Op::Concat { .. } => {
            let py = params(model, y);
            QPrep::Concat(
                n.inputs
                    .iter()
                    .map(|&i| {
                        let px = params(model, i);
                        (px != py).then(|| Rescale::new(px, py))
                    })
                    .collect(),
                vector_lut(qg.isa),
            )
        }
        Op::Pool(Pool2d {
            kind: PoolKind::Avg { .. },
            kernel,
            ..
        }) => avg_prep(model, x, y, (kernel[0] * kernel[1]) as usize),
        Op::GlobalPool(PoolKind::Avg { .. }) => {
            avg_prep(model, x, y, shape(x)[2..].iter().product())
        }
        Op::Slice { starts, steps } => {
            QPrep::Gather(layout::slice_maps(shape(x), shape(y), starts, steps), 0)
        }
        Op::Pad { pads, mode } => {
            let (s, z) = params(model, x);
            let fill = match mode {
                PadMode::Constant(c) => quantize_f32(*c, s, z),
                _ => 0,
            };
            QPrep::Gather(layout::pad_maps(shape(x), shape(y), pads, *mode), fill)
        }
        Op::Resize {
            mode: ResizeMode::Nearest(nm),
            coord,
            scales,
        } => QPrep::Gather(
            layout::nearest_maps(shape(x), shape(y), scales, *coord, *nm),
            0,
        ),
        _ => QPrep::Move,
    }
}

/// A QConv's weight scale per output channel (a per-tensor scale repeated).
fn conv_weight_scales(model: &Model, n: &Node) -> Vec<f32> {
    let w = &model.graph.tensors[n.inputs[1] as usize];
    let ws = w.quant.as_ref().map_or(&[][..], |q| &q.scale);
    (0..w.shape[0] as usize)
        .map(|m| ws[if ws.len() == 1 { 0 } else { m }])
        .collect()
}

/// A QMatMul's requantization multiplier per output column, `s_x·s_w[j] / s_y`.
fn matmul_multipliers(model: &Model, n: &Node) -> Vec<FixedMultiplier> {
    let wt = &model.graph.tensors[n.inputs[1] as usize];
    let ws = wt.quant.as_ref().map_or(&[][..], |q| &q.scale);
    let ((sx, _), (sy, _)) = (params(model, n.inputs[0]), params(model, n.outputs[0]));
    (0..wt.shape[1] as usize)
        .map(|j| {
            let sw = ws[if ws.len() == 1 { 0 } else { j }];
            mult(sx as f64 * sw as f64 / sy as f64)
        })
        .collect()
}

/// The integer rule of a QConv or QMatMul node, as every kernel path computes it: output channel c
/// (QConv: axis 1; QMatMul: the last axis) is `clamp(m_c.apply(acc + bias_c) + z_y, lo, hi)` where
/// `acc = Σ w·(x − z_x)` over the taps (padding adds nothing: it holds z_x) and `acc + bias_c`
/// saturates to i32. Public so that exporters can write the same integers (`tern export --exact`).
#[derive(Clone, Debug)]
pub struct AccRule {
    /// The input zero point z_x.
    pub zp_in: i32,
    /// The int32 bias per output channel (zeros without one).
    pub bias: Vec<i32>,
    /// The multiplier per output channel.
    pub mult: Vec<FixedMultiplier>,
    /// The output zero point z_y.
    pub zp_out: i32,
    /// The output clamp (int8 values; a fused activation narrows it).
    pub lo: i32,
    /// Upper clamp.
    pub hi: i32,
}

/// [`AccRule`] of a QConv or QMatMul node of `model`; `None` for other ops or where a multiplier cannot
/// be encoded (not in a valid model).
pub fn acc_rule(model: &Model, n: &Node) -> Option<AccRule> {
    let (lo, hi, mult, m) = match n.op {
        Op::QConv { ref geom, lo, hi } => {
            let ws = conv_weight_scales(model, n);
            let mg = ws.len() / (geom.groups as usize).max(1);
            let (si, so) = (
                qscales(model, n.inputs[0]).0,
                qscales(model, n.outputs[0]).0,
            );
            (
                lo,
                hi,
                crate::cpu::qconv::multipliers(&ws, si, so, mg)?,
                ws.len(),
            )
        }
        Op::QMatMul { lo, hi } => {
            let m = matmul_multipliers(model, n);
            let len = m.len();
            (lo, hi, m, len)
        }
        _ => return None,
    };
    let bias = match n.inputs.get(2) {
        Some(&b) => i32s(model.const_bytes(b as usize)),
        None => alloc::vec![0; m],
    };
    Some(AccRule {
        zp_in: params(model, n.inputs[0]).1,
        bias,
        mult,
        zp_out: params(model, n.outputs[0]).1,
        lo: lo as i32,
        hi: hi as i32,
    })
}

fn avg_prep(model: &Model, x: u32, y: u32, max_div: usize) -> QPrep {
    let (sx, zx) = params(model, x);
    let (sy, zy) = params(model, y);
    let mults = (0..=max_div).map(|d| avg_mult(sx, sy, d)).collect();
    QPrep::Avg(zx, zy, mults)
}

/// An integer average's multiplier over `d` values (`d = 0` as 1), `s_x / (s_y·d)`.
fn avg_mult(sx: f32, sy: f32, d: usize) -> FixedMultiplier {
    mult(sx as f64 / (sy as f64 * d.max(1) as f64))
}

/// The integer rule of an int8 GlobalAveragePool node of `model` over `d` values per plane, `(z_x, m,
/// z_y)`: each output is `clamp(m.apply(Σ(x − z_x)) + z_y, −128, 127)` (the sum in wrapping i32).
/// `None` for other ops and a float GlobalAveragePool. Public so that exporters can write the same
/// integers.
pub fn global_avg_rule(model: &Model, n: &Node, d: usize) -> Option<(i32, FixedMultiplier, i32)> {
    let Op::GlobalPool(PoolKind::Avg { .. }) = n.op else {
        return None;
    };
    let (x, y) = (*n.inputs.first()?, *n.outputs.first()?);
    // (the float op is the same Op: int8 tensors tell the integer one)
    let int8 = |t: u32| model.graph.tensors[t as usize].dtype == DType::I8;
    if !(int8(x) && int8(y)) {
        return None;
    }
    let ((sx, zx), (sy, zy)) = (params(model, x), params(model, y));
    Some((zx, avg_mult(sx, sy, d), zy))
}

/// Scratch bytes an integer node needs with `threads` threads.
pub fn scratch_bytes(prep: &QPrep, xs: &[usize], ys: &[usize], threads: usize) -> usize {
    match prep {
        QPrep::Conv(c, ..) => c.scratch_bytes([xs[0], xs[1], xs[2], xs[3]], ys[2], ys[3], threads),
        QPrep::ConvT(c, _, _, kh, kw) => {
            // the (channel, ky, kx) rows, then the 1×1 conv's own scratch
            let rows = ys[1] * kh * kw;
            xs[0] * rows * xs[2] * xs[3]
                + c.scratch_bytes([xs[0], xs[1], xs[2], xs[3]], xs[2], xs[3], threads)
        }
        QPrep::MatMul(m) => {
            let rows = xs.iter().product::<usize>() / m.k.max(1);
            m.g.b_len(m.k, rows) + rows * m.n
        }
        _ => 0,
    }
}

/// Runs an integer node. `fins`/`qins` hold the f32 and int8 views of the inputs (each input is in the
/// one its type selects; the other is empty), likewise the outputs.
#[allow(clippy::too_many_arguments)]
pub fn exec(
    par: &Par,
    op: &Op,
    prep: &QPrep,
    fins: &[View],
    qins: &[View<i8>],
    fouts: &mut [ViewMut],
    qouts: &mut [ViewMut<i8>],
    scratch: &mut [u8],
) {
    let scratch = i8s_mut(scratch);
    match prep {
        QPrep::Quantize(s, z, isa) => par_zip(par, fins[0].data, qouts[0].data, &|x, y| {
            quantize_slice(*isa, x, *s, *z, y)
        }),
        QPrep::Dequantize(s, z) => par_zip(par, qins[0].data, fouts[0].data, &|x, y| {
            for (o, &q) in y.iter_mut().zip(x) {
                *o = dequantize_i8(q, *s, *z);
            }
        }),
        QPrep::Conv(c, lo, hi) => {
            let (x, y) = (qins[0], &mut qouts[0]);
            let xs = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
            let ys = [y.shape[0], y.shape[1], y.shape[2], y.shape[3]];
            c.run(par, x.data, xs, y.data, ys, *lo, *hi, scratch);
        }
        QPrep::MatMul(m) => qmatmul(m, qins[0], &mut qouts[0], scratch),
        QPrep::ConvT(c, lo, hi, kh, kw) => {
            let (x, y) = (qins[0], &mut qouts[0]);
            let (n, ci, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            let m = y.shape[1];
            let rows = m * kh * kw;
            let (tmp, rest) = scratch.split_at_mut(n * rows * h * w);
            c.run(
                par,
                x.data,
                [n, ci, h, w],
                tmp,
                [n, rows, h, w],
                *lo,
                *hi,
                rest,
            );
            // scatter: row (mo, ky, kx), input pixel (iy, ix) -> output (iy·kh + ky, ix·kw + kx)
            let (oh, ow) = (h * kh, w * kw);
            if *kw == 2 {
                // the two kx rows of one (mo, ky) interleave into each output row (vectorizes);
                // threads split the output planes
                let (planes, tmp) = (n * m, &*tmp);
                let yp = crate::cpu::SyncPtr(y.data.as_mut_ptr());
                let threads = if planes * oh * ow >= PAR_MIN {
                    par.threads()
                } else {
                    1
                };
                par.run_on(threads, &|t| {
                    for p in share(planes, t, threads) {
                        let (b, mo) = (p / m, p % m);
                        // SAFETY: plane p belongs to this thread.
                        let plane = unsafe {
                            core::slice::from_raw_parts_mut(yp.get().add(p * oh * ow), oh * ow)
                        };
                        for ky in 0..*kh {
                            let r0 = (b * rows + (mo * kh + ky) * 2) * h * w;
                            let (s0, s1) = (&tmp[r0..r0 + h * w], &tmp[r0 + h * w..r0 + 2 * h * w]);
                            for iy in 0..h {
                                let orow = &mut plane[(iy * kh + ky) * ow..(iy * kh + ky + 1) * ow];
                                let (a, c) = (&s0[iy * w..(iy + 1) * w], &s1[iy * w..(iy + 1) * w]);
                                for ((o, &va), &vc) in orow.chunks_exact_mut(2).zip(a).zip(c) {
                                    o[0] = va;
                                    o[1] = vc;
                                }
                            }
                        }
                    }
                });
                return;
            }
            for b in 0..n {
                for (r, src) in tmp[b * rows * h * w..(b + 1) * rows * h * w]
                    .chunks_exact(h * w)
                    .enumerate()
                {
                    let (mo, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                    let plane = &mut y.data[(b * m + mo) * oh * ow..(b * m + mo + 1) * oh * ow];
                    for (iy, row) in src.chunks_exact(w).enumerate() {
                        let orow = &mut plane[(iy * kh + ky) * ow..(iy * kh + ky + 1) * ow];
                        for (o, &v) in orow[kx..].iter_mut().step_by(*kw).zip(row) {
                            *o = v;
                        }
                    }
                }
            }
        }
        QPrep::Binary(b) => qbinary(par, b, qins[0], qins[1], &mut qouts[0]),
        QPrep::Lut(t, vector) if t.len() == 1 => {
            par_zip(par, qins[0].data, qouts[0].data, &|x, y| {
                lut(&t[0], *vector, x, y)
            })
        }
        QPrep::Lut(t, vector) => {
            // a channel-scaled input or output: one table per channel
            let planes = qins[0].shape.iter().take(2).product::<usize>().max(1);
            lut_planes(par, t, *vector, qins[0].data, qouts[0].data, planes);
        }
        QPrep::Concat(r, vector) => {
            let Op::Concat { axis } = op else { return };
            let y = reborrow(&mut qouts[0]);
            layout::concat(*axis as usize, qins, y, |k, s, d| match &r[k] {
                None => d.copy_from_slice(s),
                Some(rs) => lut(&rs.table, *vector, s, d),
            });
        }
        QPrep::Avg(zx, zy, mults) => {
            let (x, y) = (qins[0], reborrow(&mut qouts[0]));
            let out = |sum: i32, div: usize| {
                (mults[div.min(mults.len() - 1)].apply(sum) + zy).clamp(-128, 127) as i8
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
                        0i32,
                        |a, v| a + (v as i32 - zx),
                        |a, (count, padded)| {
                            let div = if incl { count + padded } else { count };
                            if div == 0 {
                                *zy as i8
                            } else {
                                out(a, div)
                            }
                        },
                    )
                }
                _ => {
                    // one sum per (image, channel) plane; i32 lanes so the sum vectorizes, threads split
                    // the planes of large maps
                    let inner: usize = x.shape[2..].iter().product::<usize>().max(1);
                    let planes = y.data.len();
                    let threads = if x.data.len() >= PAR_MIN {
                        par.threads()
                    } else {
                        1
                    };
                    let yp = crate::cpu::SyncPtr(y.data.as_mut_ptr());
                    par.run_on(threads, &|t| {
                        for p in share(planes, t, threads) {
                            let src = &x.data[p * inner..(p + 1) * inner];
                            // Σ(v − zx) as Σv − zx·n: the same i32 arithmetic (wrapping, as the release
                            // build of the per-element form wrapped on absurdly large planes)
                            let sum = src
                                .iter()
                                .fold(0i32, |a, &v| a.wrapping_add(v as i32))
                                .wrapping_sub(zx.wrapping_mul(inner as i32));
                            // SAFETY: output element p belongs to this thread.
                            unsafe { *yp.get().add(p) = out(sum, inner) };
                        }
                    });
                }
            }
        }
        QPrep::Gather(m, fill) => layout::gather(par, m, *fill, qins[0], reborrow(&mut qouts[0])),
        QPrep::Move => move_values(op, i8::MIN, qins[0], qouts),
    }
}

/// Ops whose integer values move unchanged, on any integer type (int8, int16): max pooling (windows and
/// global, `min` the empty maximum), Transpose, Split (into `outs`), and Reshape-like copies.
pub(crate) fn move_values<T: Copy + Ord + Send + Sync>(
    op: &Op,
    min: T,
    x: View<T>,
    outs: &mut [ViewMut<T>],
) {
    let (first, rest) = outs.split_at_mut(1);
    let y = reborrow(&mut first[0]);
    match op {
        Op::Pool(p) => pool::max_pool(p, x, y, min, |a: T, v| a.max(v)),
        Op::GlobalPool(_) => {
            let inner: usize = x.shape[2..].iter().product();
            for (o, src) in y.data.iter_mut().zip(x.data.chunks_exact(inner.max(1))) {
                *o = src.iter().copied().max().unwrap_or(min);
            }
        }
        Op::Transpose { perm } => layout::transpose(perm, x, y),
        Op::Split { axis } => split_into(*axis as usize, x, y, rest),
        _ => y.data.copy_from_slice(x.data),
    }
}

/// A shorter-lived view of the same data.
pub(crate) fn reborrow<'a, T>(v: &'a mut ViewMut<'_, T>) -> ViewMut<'a, T> {
    ViewMut {
        data: &mut *v.data,
        shape: v.shape,
    }
}

fn i8s_mut(bytes: &mut [u8]) -> &mut [i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut i8, bytes.len()) }
}

/// Rows per panel of the packed matrix-vector kernels (one 512-bit register of i32 sums on x86).
const GEMV_ROWS: usize = 16;

/// W^T (`n×k` row-major) as the matrix-vector path of `g`'s CPU wants it: 16-row A panels where the path
/// has a packed kernel (AVX512-VNNI, NEON; flagged `true`), else as it is.
fn gemv_weights(g: &QGemm, wt: Vec<i8>, n: usize, k: usize) -> (Vec<i8>, bool) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    let panels = g.isa == crate::cpu::caps::Isa::AvxVnni
        && g.x_offset == 128
        && crate::cpu::kernels::x86::has_avx512vnni();
    #[cfg(target_arch = "aarch64")]
    let panels = g.isa != crate::cpu::caps::Isa::Scalar && g.x_offset == 0;
    #[cfg(not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64")))]
    let panels = false;
    if panels {
        let p = QGemm {
            mr: GEMV_ROWS,
            a_wide: false,
            ..*g
        };
        return (p.pack_a(n, k, |i, p| wt[i * k + p]), true);
    }
    (wt, false)
}

fn qmatmul(m: &QMat, x: View<i8>, y: &mut ViewMut<i8>, scratch: &mut [i8]) {
    let rows = x.data.len() / m.k.max(1);
    let k = m.k;
    // the unpacked path's epilogue (its bias folds no activation offset)
    let rq_gemv = Requant {
        bias: &m.bias_gemv,
        mult: &m.mult,
        zp_out: m.zy,
        lo: m.lo,
        hi: m.hi,
        fscale: &[],
        hswish: None,
    };
    if k == 0 || m.n == 0 {
        // an empty reduction: every output is its bias requantized (nothing at all for n = 0)
        for (i, o) in y.data.iter_mut().enumerate() {
            *o = rq_gemv.apply(i % m.n.max(1), 0);
        }
        return;
    }
    let rq = Requant {
        bias: &m.bias,
        mult: &m.mult,
        zp_out: m.zy,
        lo: m.lo,
        hi: m.hi,
        fscale: &[],
        hswish: None,
    };
    if rows < m.g.mr {
        // a few activation rows (batch-1 dense layers): one pass over the weights per row, no packing of
        // x (W was packed at session creation where the path has panels)
        for (xr, yr) in x.data.chunks_exact(k).zip(y.data.chunks_exact_mut(m.n)) {
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if m.gemv_panels {
                // SAFETY: panels only where the CPU has AVX512-VNNI; `wt` holds the panels of n×k.
                unsafe { crate::cpu::kernels::x86::qgemv_vnni512(&m.wt, xr, yr, &rq) };
                continue;
            }
            #[cfg(target_arch = "aarch64")]
            if m.gemv_panels {
                // SAFETY: `wt` holds the panels of n×k; SDOT only on the dotprod path (detected).
                unsafe {
                    if m.g.isa == crate::cpu::caps::Isa::Dotprod {
                        crate::cpu::kernels::neon::qgemv_sdot(&m.wt, xr, yr, &rq)
                    } else {
                        crate::cpu::kernels::neon::qgemv_smull(&m.wt, xr, yr, &rq)
                    }
                };
                continue;
            }
            qgemm::qgemv(m.g.isa, &m.wt, xr, yr, &rq_gemv);
        }
        return;
    }
    let (bp, tmp) = scratch.split_at_mut(m.g.b_len(k, rows));
    let packed = m.g.pack_b_into(bp, k, rows, |p, j| x.data[j * k + p]);
    // the kernel computes W^T·x^T (N × rows); the output wants rows × N
    qgemm::qgemm(
        &m.g,
        (m.n, rows, k),
        &m.a,
        packed,
        &mut tmp[..m.n * rows],
        rows,
        &rq,
    );
    for (j, row) in y.data.chunks_exact_mut(m.n).enumerate() {
        for (c, o) in row.iter_mut().enumerate() {
            *o = tmp[c * rows + j];
        }
    }
}

/// Whether 16-lane AVX-512 integer loops run: the AVX-VNNI path on a CPU that also has AVX-512 F/BW (like
/// the GEMM's epilogue; `TERN_CPU=avx2` keeps the AVX2 loops, so that path stays testable here).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn wide_path(isa: crate::cpu::caps::Isa) -> bool {
    isa == crate::cpu::caps::Isa::AvxVnni && crate::cpu::kernels::x86::has_avx512()
}

/// Whether table lookups run vectorized: on AVX-512 VBMI for the AVX-VNNI path on a CPU that also has
/// VBMI (`TERN_CPU=avx2` keeps the plain loop, so that path stays testable here), with `tbl` on the
/// aarch64 paths (`TERN_CPU=scalar` keeps the plain loop).
pub(crate) fn vector_lut(isa: crate::cpu::caps::Isa) -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        isa == crate::cpu::caps::Isa::AvxVnni && crate::cpu::kernels::x86::has_vbmi()
    }
    #[cfg(target_arch = "aarch64")]
    {
        isa != crate::cpu::caps::Isa::Scalar
    }
    #[cfg(not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64")))]
    {
        let _ = isa;
        false
    }
}

/// ONNX QuantizeLinear over a slice, with the explicit AVX2 loop where the path has it (8-wide division).
pub(crate) fn quantize_slice(isa: crate::cpu::caps::Isa, x: &[f32], s: f32, z: i32, y: &mut [i8]) {
    #[inline(always)]
    fn body(x: &[f32], s: f32, z: i32, y: &mut [i8]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = quantize_f32(v, s, z);
        }
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(
        isa,
        crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
    ) {
        // SAFETY: the session only selects an AVX2 path on a CPU that has it; wide_path checks AVX-512.
        let done = unsafe {
            if wide_path(isa) {
                crate::cpu::kernels::x86::quantize512(x, s, z, y)
            } else {
                crate::cpu::kernels::x86::quantize_avx2(x, s, z, y)
            }
        };
        return body(&x[done..], s, z, &mut y[done..]);
    }
    let _ = isa;
    body(x, s, z, y)
}

/// `y[i] = t[x[i] + 128]`, with the path's vector lookup where `vector` ([`vector_lut`]): AVX-512 byte
/// permutes on x86, `tbl` on aarch64.
fn lut(t: &[i8; 256], vector: bool, x: &[i8], y: &mut [i8]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if vector {
        // SAFETY: `vector` is set only where the CPU has AVX-512 VBMI (vector_lut).
        return unsafe { crate::cpu::kernels::x86::lut_vbmi(t, x, y) };
    }
    #[cfg(target_arch = "aarch64")]
    if vector {
        // SAFETY: NEON is part of aarch64.
        return unsafe { crate::cpu::kernels::neon::lut_neon(t, x, y) };
    }
    let _ = vector;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = t[(v as i32 + 128) as usize];
    }
}

/// `y = t[x + 128]` per (item, channel) plane of NCHW data, plane p taking table p % tables.len(); threads
/// split the planes when the data is large. `planes` = N·C.
pub(crate) fn lut_planes(
    par: &Par,
    tables: &[[i8; 256]],
    vector: bool,
    x: &[i8],
    y: &mut [i8],
    planes: usize,
) {
    let n = x.len().min(y.len());
    if tables.is_empty() || planes == 0 {
        return;
    }
    let (c, npix) = (tables.len(), n / planes);
    let yp = crate::cpu::SyncPtr(y.as_mut_ptr());
    let threads = if n >= PAR_MIN { par.threads() } else { 1 };
    par.run_on(threads, &|k| {
        for p in share(planes, k, threads) {
            // SAFETY: plane p (npix values from p·npix < n) belongs to this thread.
            let out = unsafe { core::slice::from_raw_parts_mut(yp.get().add(p * npix), npix) };
            lut(&tables[p % c], vector, &x[p * npix..(p + 1) * npix], out);
        }
    });
}

/// `f(x_part, y_part)` over matching element ranges of `x` and `y`, split across the threads when large.
fn par_zip<A: Sync, B: Send>(par: &Par, x: &[A], y: &mut [B], f: &(dyn Fn(&[A], &mut [B]) + Sync)) {
    let n = x.len().min(y.len());
    let threads = if n >= PAR_MIN { par.threads() } else { 1 };
    let yp = crate::cpu::SyncPtr(y.as_mut_ptr());
    par.run_on(threads, &|t| {
        let r = share(n, t, threads);
        // SAFETY: threads take disjoint ranges of y.
        let part = unsafe { core::slice::from_raw_parts_mut(yp.get().add(r.start), r.len()) };
        f(&x[r.start..r.end], part);
    });
}

/// Where one operand stays fixed for more than this many consecutive outputs, the op runs through a
/// 256-entry table of it with that operand (built once per value).
const TABLE_MIN: usize = 512;

/// Below this many outputs an element-wise op runs on one thread.
const PAR_MIN: usize = 1 << 14;

fn qbinary(par: &Par, b: &QBin, xa: View<i8>, xb: View<i8>, y: &mut ViewMut<i8>) {
    if y.data.is_empty() {
        return; // a zero-sized axis: nothing to write (and no index arithmetic on it)
    }
    let r = y.shape.len();
    let (mut sa, mut sb) = ([0usize; 8], [0usize; 8]);
    broadcast_strides(xa.shape, y.shape, 1, &mut sa);
    broadcast_strides(xb.shape, y.shape, 1, &mut sb);
    // rows of the innermost axis; each operand either runs along a row (stride 1) or repeats one value
    let mut inner = if r == 0 { 1 } else { y.shape[r - 1] };
    let (ia, ib) = if r == 0 {
        (0, 0)
    } else {
        (sa[r - 1], sb[r - 1])
    };
    // trailing axes along which each operand keeps its kind (contiguous, or one repeated value) join
    // the row: an SE gate over [C, H, W] then takes rows of H·W, not H rows of W (per-row overhead
    // dominated PP-OCR cls's 2×96 planes), while enough rows remain for the threads to share (the rows
    // are the unit of work: a residual Add merged into one row ran on one thread). Axes 0..re-1 index
    // the rows.
    let min_rows = 4 * par.threads().max(1);
    let mut re = r;
    while re >= 2 {
        let d = re - 2;
        let keeps = |s: &[usize; 8], i: usize| s[d] == if i == 1 { inner } else { 0 };
        let rows_left = y.data.len() / (inner * y.shape[d]).max(1);
        if !(keeps(&sa, ia) && keeps(&sb, ib)) || rows_left < min_rows {
            break;
        }
        inner *= y.shape[d];
        re -= 1;
    }
    let outer = y.data.len().checked_div(inner).unwrap_or(0);
    // how many consecutive outputs share one value of a broadcast operand (an SE gate: H·W)
    let run = |st: &[usize; 8]| -> usize {
        let mut n = 1;
        for d in (0..r).rev() {
            if st[d] != 0 {
                break;
            }
            n *= y.shape[d];
        }
        n
    };
    let (run_a, run_b) = (run(&sa), run(&sb));
    // a Mul by one value per row has a vector form (products requantized in registers) that beats the
    // table on the AVX2 paths, however long the run
    let vmul = b.op == BinOp::Mul
        && matches!(
            b.isa,
            crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
        );
    let threads = if y.data.len() >= PAR_MIN {
        par.threads()
    } else {
        1
    };
    let yp = crate::cpu::SyncPtr(y.data.as_mut_ptr());
    let shape = y.shape;
    par.run_on(threads, &|t| {
        let rows = share(outer, t, threads);
        let mut idx = [0usize; 8];
        let (mut cached, mut table) = (None, [0i8; 256]);
        let vector = vector_lut(b.isa);
        let mut rem = rows.start;
        for d in (0..re.saturating_sub(1)).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        for o in rows {
            let (mut oa, mut ob) = (0, 0);
            for d in 0..re.saturating_sub(1) {
                oa += idx[d] * sa[d];
                ob += idx[d] * sb[d];
            }
            // SAFETY: threads write disjoint rows of the output.
            let out = unsafe { core::slice::from_raw_parts_mut(yp.get().add(o * inner), inner) };
            match (ia, ib) {
                (1, 1) => b.apply_rows(&xa.data[oa..oa + inner], &xb.data[ob..ob + inner], out),
                // one operand fixed along the row (a per-channel scale, an SE gate): on long rows a
                // 256-entry table of the op with that operand is cheaper than the arithmetic per element
                (1, _) if run_b > TABLE_MIN && !vmul => {
                    let q = xb.data[ob];
                    if cached != Some(q as i32) {
                        cached = Some(q as i32);
                        table = core::array::from_fn(|i| b.apply((i as i32 - 128) as i8, q));
                    }
                    lut(&table, vector, &xa.data[oa..oa + inner], out)
                }
                (_, 1) if run_a > TABLE_MIN && !vmul => {
                    let p = xa.data[oa];
                    if cached != Some(p as i32) {
                        cached = Some(p as i32);
                        table = core::array::from_fn(|i| b.apply(p, (i as i32 - 128) as i8));
                    }
                    lut(&table, vector, &xb.data[ob..ob + inner], out)
                }
                (1, _) if b.op == BinOp::Mul => {
                    b.mul_rows((&xa.data[oa..oa + inner], b.za), (xb.data[ob], b.zb), out)
                }
                // Mul commutes (the products are the same integers)
                (_, 1) if b.op == BinOp::Mul => {
                    b.mul_rows((&xb.data[ob..ob + inner], b.zb), (xa.data[oa], b.za), out)
                }
                (1, _) => {
                    let q = xb.data[ob];
                    out.iter_mut()
                        .zip(&xa.data[oa..oa + inner])
                        .for_each(|(v, &p)| *v = b.apply(p, q))
                }
                (_, 1) => {
                    let p = xa.data[oa];
                    out.iter_mut()
                        .zip(&xb.data[ob..ob + inner])
                        .for_each(|(v, &q)| *v = b.apply(p, q))
                }
                _ => out.fill(b.apply(xa.data[oa], xb.data[ob])),
            }
            for d in (0..re.saturating_sub(1)).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::caps;
    use alloc::vec;

    /// Add, Sub, Mul on every pair of int8 values stay within one output step of the float64 result of the
    /// dequantized operands (exact except where that result lies within 2^-16 of a rounding boundary).
    #[test]
    fn integer_binary_ops_follow_float64() {
        let (pa, pb, py) = ((0.031f32, -7), (0.0123f32, 20), (0.047f32, 3));
        for op in [BinOp::Add, BinOp::Sub, BinOp::Mul] {
            let py = if op == BinOp::Mul { (0.09f32, -40) } else { py };
            let b = QBin::new(op, pa, pb, py, -128, 127);
            let mut off = 0;
            for a in -128i32..128 {
                for c in -128i32..128 {
                    let (x, y) = (
                        (a - pa.1) as f64 * pa.0 as f64,
                        (c - pb.1) as f64 * pb.0 as f64,
                    );
                    let r = match op {
                        BinOp::Add => x + y,
                        BinOp::Sub => x - y,
                        _ => x * y,
                    };
                    let want = (libm::round(r / py.0 as f64) as i32 + py.1).clamp(-128, 127);
                    let got = b.apply(a as i8, c as i8) as i32;
                    assert!((got - want).abs() <= 1, "{op:?} {a} {c}: {got} vs {want}");
                    off += (got != want) as usize;
                }
            }
            assert!(off < 65536 / 500, "{op:?}: {off} off by one");
            // every path's row kernel equals the scalar definition on all 65536 pairs
            let (xa, xb): (Vec<i8>, Vec<i8>) = (0..65536)
                .map(|i| ((i / 256) as u8 as i8, (i % 256) as u8 as i8))
                .unzip();
            for isa in caps::available() {
                let v = QBin::new(op, pa, pb, py, -100, 120).with_isa(isa);
                let mut got = vec![0i8; 65536 + 3];
                v.apply_rows(&xa, &xb, &mut got[..65536]);
                for i in 0..65536 {
                    assert_eq!(got[i], v.apply(xa[i], xb[i]), "{op:?} {isa:?} [{i}]");
                }
            }
        }
    }

    /// The AVX-512 table lookup (where the CPU has it) equals indexing the table, for every index and
    /// every tail length.
    #[test]
    fn vector_table_lookup_equals_indexing() {
        #[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
        {
            #[cfg(target_arch = "x86_64")]
            if !crate::cpu::kernels::x86::has_vbmi() {
                std::println!("no AVX-512 VBMI on this CPU: the plain lookup is the only path");
                return;
            }
            let t: [i8; 256] =
                core::array::from_fn(|i| (i as u8).wrapping_mul(167).wrapping_add(11) as i8);
            let x: Vec<i8> = (0..700)
                .map(|i| ((i * 37 + i / 3) % 256) as u8 as i8)
                .collect();
            for n in (0..200).chain([255, 256, 257, 640, 700]) {
                let mut got = vec![0i8; n];
                lut(&t, true, &x[..n], &mut got);
                let want: Vec<i8> = x[..n]
                    .iter()
                    .map(|&v| t[(v as i32 + 128) as usize])
                    .collect();
                assert_eq!(got, want, "n {n}");
            }
        }
    }

    /// Every path's float-to-int8 quantization equals the scalar rule on ties, range ends, infinities
    /// and NaN, with tails.
    #[test]
    fn quantize_paths_equal_the_scalar_rule() {
        let mut x: Vec<f32> = (-700..700).map(|i| i as f32 * 0.25).collect();
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1e30,
            -1e30,
            f32::MIN_POSITIVE,
            2.5,
            -2.5,
            3.5,
            126.5,
            127.5,
            -128.5,
            -129.5,
        ]);
        for &(s, z) in &[(1.0f32, 0), (0.5, -3), (0.037, 17), (3.0, -128)] {
            let want: Vec<i8> = x.iter().map(|&v| quantize_f32(v, s, z)).collect();
            for isa in caps::available() {
                for n in [x.len(), x.len() - 3, 7] {
                    let mut got = vec![0i8; n];
                    quantize_slice(isa, &x[..n], s, z, &mut got);
                    assert_eq!(got, want[..n], "{isa:?} s {s} z {z} n {n}");
                }
            }
        }
    }

    /// A broadcast operand (an SE gate) takes the table path on long runs: the same integers as `apply`.
    #[test]
    fn broadcast_binary_equals_apply() {
        // long runs take the table, short ones the vector requant of the products
        for (h, w) in [(20usize, 40usize), (2, 30)] {
            broadcast_case(h, w);
        }
    }

    /// Every broadcast pattern of a 4-D Add/Sub/Mul (operands of either kind along the row, rows joined
    /// across trailing axes where both operands allow), on one and two threads, gives `apply` on the
    /// broadcast elements.
    #[test]
    fn broadcast_patterns_equal_apply() {
        let full = [2usize, 3, 4, 5];
        let shapes: [[usize; 4]; 8] = [
            [2, 3, 4, 5],
            [1, 3, 1, 1],
            [1, 1, 4, 5],
            [1, 3, 4, 1],
            [1, 1, 1, 5],
            [2, 1, 4, 5],
            [1, 3, 1, 5],
            [1, 1, 1, 1],
        ];
        let pool = crate::cpu::pool::Pool::new(2).unwrap();
        let pars = [Par::single(), Par { pool: Some(&pool) }];
        for (op, par) in [BinOp::Add, BinOp::Sub, BinOp::Mul]
            .into_iter()
            .flat_map(|op| pars.iter().map(move |p| (op, p)))
        {
            let b = QBin::new(op, (0.031, -7), (0.0123, 20), (0.09, -40), -128, 127)
                .with_isa(caps::best());
            for sa in &shapes {
                for sb in &shapes {
                    let n = |s: &[usize; 4]| s.iter().product::<usize>();
                    let xa: Vec<i8> = (0..n(sa)).map(|i| (i * 37 + 5) as u8 as i8).collect();
                    let xb: Vec<i8> = (0..n(sb)).map(|i| (i * 91 + 17) as u8 as i8).collect();
                    let mut y = vec![0i8; n(&full)];
                    let mut yv = ViewMut {
                        data: &mut y,
                        shape: &full,
                    };
                    let (va, vb) = (
                        View {
                            data: &xa,
                            shape: sa,
                        },
                        View {
                            data: &xb,
                            shape: sb,
                        },
                    );
                    qbinary(par, &b, va, vb, &mut yv);
                    // the element of an operand at output index (i0, i1, i2, i3)
                    let at = |x: &[i8], s: &[usize; 4], i: [usize; 4]| {
                        let mut o = 0;
                        for d in 0..4 {
                            o = o * s[d] + if s[d] == 1 { 0 } else { i[d] };
                        }
                        x[o]
                    };
                    for (k, &v) in y.iter().enumerate() {
                        let i = [k / 60, k / 20 % 3, k / 5 % 4, k % 5];
                        let want = b.apply(at(&xa, sa, i), at(&xb, sb, i));
                        assert_eq!(v, want, "{op:?} {sa:?} x {sb:?} at {i:?}");
                    }
                }
            }
        }
    }

    fn broadcast_case(h: usize, w: usize) {
        let b = QBin::new(
            BinOp::Mul,
            (0.031, -7),
            (0.0123, 20),
            (0.09, -40),
            -128,
            127,
        )
        .with_isa(caps::best());
        let c = 3usize;
        let big: Vec<i8> = (0..c * h * w)
            .map(|i| ((i * 97 + 13) % 256) as u8 as i8)
            .collect();
        let gate: Vec<i8> = vec![-128, 5, 127];
        let (sb, sg) = ([1, c, h, w], [1, c, 1, 1]);
        for gate_first in [false, true] {
            let mut y = vec![0i8; c * h * w];
            let mut yv = ViewMut {
                data: &mut y,
                shape: &sb,
            };
            let (vb, vg) = (
                View {
                    data: &big,
                    shape: &sb,
                },
                View {
                    data: &gate,
                    shape: &sg,
                },
            );
            if gate_first {
                qbinary(&Par::single(), &b, vg, vb, &mut yv);
            } else {
                qbinary(&Par::single(), &b, vb, vg, &mut yv);
            }
            for (i, &v) in y.iter().enumerate() {
                let (p, q) = (big[i], gate[i / (h * w)]);
                let want = if gate_first {
                    b.apply(q, p)
                } else {
                    b.apply(p, q)
                };
                assert_eq!(v, want, "[{i}] gate first {gate_first}");
            }
        }
    }

    #[test]
    fn rescale_follows_float64() {
        let r = Rescale::new((0.02, 5), (0.035, -11));
        for q in -128i32..128 {
            let want = (libm::round((q - 5) as f64 * 0.02f32 as f64 / 0.035f32 as f64) as i32 - 11)
                .clamp(-128, 127);
            assert_eq!(r.apply(q as i8) as i32, want, "{q}");
        }
    }

    /// The integer matmul equals an integer reference exactly on every kernel path (rows and columns with
    /// tails), per-column weight scales included.
    #[test]
    fn integer_matmul_is_exact() {
        // (AVX512-VNNI's gemv takes 16-row panels four at a time: these widths end in groups of one,
        // four then three, and two panels, partial ones included)
        // (k, n, whether weights reach −128): k tails of 1, 2, 3 and none
        let shapes = [
            (37usize, 11usize, false),
            (301, 99, false),
            (64, 25, false),
            (38, 19, true),
            (303, 17, true),
        ];
        for (rows, (k, n, full)) in [1usize, 5, 13]
            .into_iter()
            .flat_map(|r| shapes.map(|s| (r, s)))
        {
            let x: Vec<i8> = (0..rows * k)
                .map(|i| ((i * 37 + 11) % 256) as u8 as i8)
                .collect();
            let span = if full { 256 } else { 255 };
            let w: Vec<i8> = (0..k * n)
                .map(|i| ((i * 91 + 5) % span) as i32 - span as i32 / 2)
                .map(|v| v as i8)
                .collect();
            // column 3's multiplier ≥ 1 (no vector form: the scalar rule) and column 6's zero
            let ws: Vec<f32> = (0..n)
                .map(|j| match j {
                    3 => 2.0,
                    6 => 0.0,
                    _ => 0.001 + j as f32 * 0.0002,
                })
                .collect();
            let bias: Vec<i32> = (0..n as i32).map(|j| j * 300 - 1000).collect();
            let ((sx, zx), (sy, zy)) = ((0.05f32, -9), (0.07f32, 4));
            let wt: Vec<i8> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let mults: Vec<FixedMultiplier> = ws
                .iter()
                .map(|&s| mult(sx as f64 * s as f64 / sy as f64))
                .collect();
            let mut want = vec![0i8; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let acc: i32 = (0..k)
                        .map(|p| (x[r * k + p] as i32 - zx) * w[p * n + j] as i32)
                        .sum();
                    want[r * n + j] = (mults[j].apply(acc + bias[j]) + zy).clamp(-100, 127) as i8;
                }
            }
            for isa in caps::available() {
                let g = qgemm::qgemm_for(isa).for_weights(&wt);
                let (wt_gemv, gemv_panels) = gemv_weights(&g, wt.clone(), n, k);
                let m = QMat {
                    g,
                    a: g.pack_a(n, k, |i, p| wt[i * k + p]),
                    bias: g.fold_bias(&bias, &wt, k, zx),
                    bias_gemv: qgemm::qgemm_for(caps::Isa::Scalar).fold_bias(&bias, &wt, k, zx),
                    wt: wt_gemv,
                    gemv_panels,
                    mult: mults.clone(),
                    zy,
                    lo: -100,
                    hi: 127,
                    k,
                    n,
                };
                let mut y = vec![0i8; rows * n];
                let mut scratch = vec![0i8; 1 << 16];
                let shape = [rows, k];
                let yshape = [rows, n];
                let mut yv = ViewMut {
                    data: &mut y,
                    shape: &yshape,
                };
                qmatmul(
                    &m,
                    View {
                        data: &x,
                        shape: &shape,
                    },
                    &mut yv,
                    &mut scratch,
                );
                assert_eq!(y, want, "{} rows {rows}", g.name);
            }
        }
    }
}
