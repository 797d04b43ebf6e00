//! LSTM, GRU and RNN: per direction, the input projection of every step at once (one packed GEMM, `S·B × G·H`
//! for G gates, the biases in its epilogue), then the recurrence step by step: `h·Rᵀ` added to the step's
//! column, the gates, the cell. The recurrence is a matrix-vector product per step (R read once per step:
//! memory bound for batch 1, as in every LSTM engine); the GEMM takes the input side's MACs.
use super::{View, ViewMut};
use crate::cpu::caps::Isa;
use crate::cpu::gemm::{self, ASrc, BSrc, Epilogue};
#[cfg(target_arch = "aarch64")]
use crate::cpu::kernels::neon;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
use crate::cpu::kernels::x86;
use crate::cpu::kernels::Gemm;
use crate::cpu::{Par, SyncPtr};
use crate::ir::{Direction, Unary};
use alloc::vec;
use alloc::vec::Vec;

/// Which recurrent cell a prepared op runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cell {
    /// LSTM (gates i, o, f, c; peepholes when the op has input 6).
    Lstm,
    /// GRU (gates z, r, h) with ONNX's `linear_before_reset`.
    Gru {
        /// The reset gate scales `R_h·h + Rb_h` instead of h.
        linear_before_reset: bool,
    },
    /// Plain RNN (one tanh gate).
    Rnn,
}

impl Cell {
    /// Gates per hidden unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
            Cell::Rnn => 1,
        }
    }

    /// Where a batch row's new h lands in its gate block (a part free by then): an LSTM's o, a GRU's
    /// r, an RNN's only gate.
    fn h_at(self, h: usize) -> usize {
        match self {
            Cell::Rnn => 0,
            _ => h,
        }
    }
}

/// Recurrent weights prepared at session creation.
pub struct RnnPrep {
    /// The cell.
    cell: Cell,
    /// W of each direction transposed and packed as the GEMM's B (`I × G·H`), one block after another.
    w: Vec<f32>,
    /// Floats per direction block of `w`.
    w_stride: usize,
    /// `Wb + Rb` per direction (`G·H` each), but for a GRU with `linear_before_reset` its h gate's `Rb`,
    /// which the reset gate scales (in `rb_h`).
    bias: Vec<f32>,
    /// A `linear_before_reset` GRU's `Rb_h` per direction (`H` each); else empty.
    rb_h: Vec<f32>,
    /// R as stored int8 with one scale per row of every direction (`D·G·H`), when the artifact stores it
    /// so: the recurrence then reads a quarter of the bytes per step (R is read whole every step; at
    /// hidden 512 an LSTM's f32 R is 4 MiB per direction, beyond L2) and computes `scale · s_h · Σ q·q_h`
    /// with h as 15-bit codes (`quantize_h`), the sums exact integers (`vpmaddwd` / `smlal`: 16 or 32
    /// MACs an instruction where the f32 form converted every int8 value to float first).
    r8: Option<(Vec<i8>, Vec<f32>)>,
}

impl RnnPrep {
    /// Runs the recurrence on R as stored int8 (`q`, `[D, G·H, H]`) with its parameters `p`, when they
    /// are symmetric and per row (axis 1) or per tensor; otherwise the widened f32 R stays in use.
    pub fn use_int8_recurrence(&mut self, q: &[i8], shape: &[usize], p: &crate::ir::QParams) {
        let (d, rows) = (shape[0], shape[1]);
        if p.zero_point.iter().any(|&z| z != 0) {
            return;
        }
        let scale: Vec<f32> = match (p.axis, p.scale.len()) {
            (None, 1) => vec![p.scale[0]; d * rows],
            (Some(1), n) if n == rows => (0..d).flat_map(|_| p.scale.iter().copied()).collect(),
            _ => return,
        };
        self.r8 = Some((q.to_vec(), scale));
    }

    /// Whether the recurrence runs on int8 R ([`RnnPrep::use_int8_recurrence`]): then [`run`] reads
    /// neither the f32 W (packed) nor the f32 R.
    pub fn recurrence_is_int8(&self) -> bool {
        self.r8.is_some()
    }
}

/// The op's sizes: directions, sequence length, batch, input features, hidden size, gates.
#[derive(Clone, Copy)]
struct Dims {
    d: usize,
    s: usize,
    b: usize,
    i: usize,
    h: usize,
    gates: usize,
}

impl Dims {
    fn of(x: &[usize], w: &[usize], cell: Cell) -> Self {
        let gates = cell.gates();
        Dims {
            d: w[0],
            s: x[0],
            b: x[1],
            i: x[2],
            h: w[1] / gates,
            gates,
        }
    }
}

/// Packs W (`[D, G·H, I]`) and sums the two biases (`[D, 2·G·H]`), keeping a `linear_before_reset`
/// GRU's `Rb_h` apart.
pub fn prepare(g: &Gemm, cell: Cell, w: &[f32], wshape: &[usize], bias: &[f32]) -> RnnPrep {
    let (d, rows, i) = (wshape[0], wshape[1], wshape[2]);
    let h = rows / cell.gates();
    // rows of R's bias that go into the GEMM's: all but a linear-before-reset GRU's h gate
    let folded = match cell {
        Cell::Gru {
            linear_before_reset: true,
        } => 2 * h,
        _ => rows,
    };
    let mut packed = Vec::new();
    let mut w_stride = 0;
    for k in 0..d {
        let block = gemm::pack_b(g, i, rows, |p, j| w[(k * rows + j) * i + p]);
        w_stride = block.len();
        packed.extend_from_slice(&block);
    }
    let per_dir = |k: usize| &bias[k * 2 * rows..(k + 1) * 2 * rows];
    let bias = (0..d)
        .flat_map(|k| {
            let b = per_dir(k);
            (0..rows).map(move |r| b[r] + if r < folded { b[rows + r] } else { 0.0 })
        })
        .collect();
    let rb_h = (0..d)
        .flat_map(|k| per_dir(k)[rows + folded..].to_vec())
        .collect();
    RnnPrep {
        cell,
        w: packed,
        w_stride,
        bias,
        rb_h,
        r8: None,
    }
}

/// Scratch floats of one direction: its projected inputs (`S·B × G·H`), step buffers, and its GEMM's on
/// `threads`.
fn dir_scratch(g: &Gemm, z: Dims, threads: usize) -> usize {
    let (sb, gh) = (z.s * z.b, z.gates * z.h);
    gh * sb
        + gh * z.b
        + 2 * z.b * z.h
        + int8_step_floats(z)
        + gemm::scratch_floats(g, sb, gh, z.i, false, true, threads)
}

/// Scratch floats of the int8 recurrence's step: h's 15-bit codes (two per float) and the `G·H` row
/// sums.
fn int8_step_floats(z: Dims) -> usize {
    z.h.div_ceil(2) + z.gates * z.h
}

/// Columns of one i32 partial sum of the int8 recurrence: |q·h| ≤ 128 · 32767 per term, so 512 terms
/// stay below 2³¹ whatever the order of adding (the vector kernels add lanes, then chunks as i64).
pub const I16_CHUNK: usize = 512;

/// h's largest code in the int8 recurrence (15 bits and a sign: h is carried within 1/65534 of its
/// largest value, far below R's int8 step).
const H_CODE: f32 = 32767.0;

/// h as 15-bit codes with one scale, `max|h| / 32767` (0 when h is all zero), which it returns: the
/// integer operand of the int8 recurrence. The caller checks h is finite.
fn quantize_h(h: &[f32], q: &mut [i16]) -> f32 {
    let top = h.iter().fold(0f32, |a, v| a.max(v.abs()));
    if top == 0.0 {
        q.fill(0);
        return 0.0;
    }
    // v / top first: H_CODE / top overflows to inf for a top below ~1e-34 (a tiny initial state), and
    // the codes must stay within ±32767 for the kernels' i32 bound
    for (d, &v) in q.iter_mut().zip(h) {
        *d = libm::roundf(v / top * H_CODE).clamp(-H_CODE, H_CODE) as i16;
    }
    top / H_CODE
}

/// `out[r] = (Σ_c m[r·n + c] · h[c]) as f32` for the rows of `out` (n = `h.len()`), summed exactly in
/// i64: the reference of the vector kernels, which give its bits.
pub fn dot_rows_i8_i16_ref(m: &[i8], h: &[i16], out: &mut [f32]) {
    let n = h.len();
    for (r, o) in out.iter_mut().enumerate() {
        let row = &m[r * n..][..n];
        *o = row
            .iter()
            .zip(h)
            .map(|(&a, &b)| a as i64 * b as i64)
            .sum::<i64>() as f32;
    }
}

/// A vector kernel's chunk of row sums: rows `r..r + R` over columns `c0..c1` (`x86::dot_chunk_avx2`,
/// `dot_chunk_512`, `neon::dot_chunk_neon`).
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
type Chunk<'a, const R: usize> = &'a dyn Fn(usize, usize, usize) -> [i64; R];

/// Rows `r..r + R` of [`dot_rows_i8_i16_ref`]: the vector kernel over whole vectors of `lanes` columns,
/// at most [`I16_CHUNK`] columns a call (its i32 lanes stay exact), the remaining columns here.
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
fn block_sums<const R: usize>(
    (m, h): (&[i8], &[i16]),
    r: usize,
    lanes: usize,
    chunk: Chunk<R>,
    out: &mut [f32],
) {
    let n = h.len();
    let full = n - n % lanes;
    let mut tot = [0i64; R];
    for c0 in (0..full).step_by(I16_CHUNK) {
        let part = chunk(r, c0, (c0 + I16_CHUNK).min(full));
        tot.iter_mut().zip(part).for_each(|(t, p)| *t += p);
    }
    for (j, t) in tot.iter_mut().enumerate() {
        let row = &m[(r + j) * n..][..n];
        *t += row[full..]
            .iter()
            .zip(&h[full..])
            .map(|(&a, &b)| a as i64 * b as i64)
            .sum::<i64>();
        out[r + j] = *t as f32;
    }
}

/// [`dot_rows_i8_i16_ref`] through a vector kernel: four rows at a time (each load of h shared), then
/// one.
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
fn dot_rows_vec(
    mh: (&[i8], &[i16]),
    out: &mut [f32],
    lanes: usize,
    (four, one): (Chunk<4>, Chunk<1>),
) {
    let rows = out.len();
    let mut r = 0;
    while r + 4 <= rows {
        block_sums(mh, r, lanes, four, out);
        r += 4;
    }
    while r < rows {
        block_sums(mh, r, lanes, one, out);
        r += 1;
    }
}

/// [`dot_rows_i8_i16_ref`] on the session's instruction-set path (AVX-512 BW on the AVX-VNNI path of an
/// AVX-512 CPU, as the int8 GEMM; AVX2; NEON; or the reference): the same exact integers.
fn dot_rows_i8_i16(isa: Isa, m: &[i8], h: &[i16], out: &mut [f32]) {
    assert!(
        m.len() >= out.len() * h.len(),
        "int8 recurrence: R too short"
    );
    let mh = (m, h);
    // SAFETY (every kernel call below): the path's features were detected (AVX-512 F and BW checked
    // here; Avx2/AvxVnni are chosen only where AVX2 is; NEON is part of aarch64), `block_sums` asks
    // for rows below out.len() (R holds them: checked above) and whole vectors of columns below h.len()
    match isa {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::AvxVnni if x86::has_avx512() => dot_rows_vec(
            mh,
            out,
            32,
            (
                &|r, a, b| unsafe { x86::dot_chunk_512::<4>(m, h, r, a, b) },
                &|r, a, b| unsafe { x86::dot_chunk_512::<1>(m, h, r, a, b) },
            ),
        ),
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::Avx2 | Isa::AvxVnni => dot_rows_vec(
            mh,
            out,
            16,
            (
                &|r, a, b| unsafe { x86::dot_chunk_avx2::<4>(m, h, r, a, b) },
                &|r, a, b| unsafe { x86::dot_chunk_avx2::<1>(m, h, r, a, b) },
            ),
        ),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod => dot_rows_vec(
            mh,
            out,
            16,
            (
                &|r, a, b| unsafe { neon::dot_chunk_neon::<4>(m, h, r, a, b) },
                &|r, a, b| unsafe { neon::dot_chunk_neon::<1>(m, h, r, a, b) },
            ),
        ),
        _ => {
            let _ = mh; // (only the vector paths take the pair)
            dot_rows_i8_i16_ref(m, h, out)
        }
    }
}

/// Whether the two directions of a bidirectional op run at once, one per thread: the recurrence is a
/// chain of steps no thread can split cheaply, but the directions are independent.
fn directions_in_parallel(z: Dims, threads: usize) -> bool {
    z.d == 2 && threads >= 2
}

/// Scratch floats for [`run`] on `threads`.
pub fn scratch(g: &Gemm, cell: Cell, x: &[usize], w: &[usize], threads: usize) -> usize {
    let z = Dims::of(x, w, cell);
    if directions_in_parallel(z, threads) {
        2 * dir_scratch(g, z, 1)
    } else {
        dir_scratch(g, z, threads)
    }
}

/// `acc[r] += scale[r] · dot(m[r], v)` (`scale` absent: 1, no multiply) for the rows of `m`
/// (`rows × v.len()`, f32 or int8 values): sixteen partial sums per row so the compiler keeps them in
/// vector registers. Compiled for AVX2 where the CPU has it ([`matvec_add`]); the same operations in the
/// same order either way (no contraction into FMA), so the same bits.
#[inline(always)]
fn matvec_body<T: Copy>(m: &[T], v: &[f32], scale: Option<&[f32]>, acc: &mut [f32])
where
    f32: From<T>,
{
    let n = v.len();
    let full = n - n % 16;
    let (vb, vt) = v.split_at(full);
    // each row's sum of its sixteen lanes and tail, scaled, into acc
    let finish = |part: &[f32; 16], row: &[T], r: usize, a: &mut f32| {
        let mut sum: f32 = part.iter().sum();
        for (w, x) in row[full..].iter().zip(vt) {
            sum += f32::from(*w) * x;
        }
        *a += match scale {
            Some(s) => s[r] * sum,
            None => sum,
        };
    };
    // four rows at a time share each chunk of v and give the adds eight independent chains (one row
    // alone waits on its two accumulators' add latency); every row's lanes add in the same order as
    // alone, so blocking changes no bits
    // (no columns: every sum is 0 and nothing changes)
    let rows = acc.len().min(m.len().checked_div(n).unwrap_or(0));
    let mut r = 0;
    while r + 4 <= rows {
        let mut part = [[0f32; 16]; 4];
        for (c, x) in vb.chunks_exact(16).enumerate() {
            for (j, p) in part.iter_mut().enumerate() {
                let w = &m[(r + j) * n + c * 16..][..16];
                for k in 0..16 {
                    p[k] += f32::from(w[k]) * x[k];
                }
            }
        }
        for (j, p) in part.iter().enumerate() {
            finish(p, &m[(r + j) * n..][..n], r + j, &mut acc[r + j]);
        }
        r += 4;
    }
    for r in r..rows {
        let row = &m[r * n..][..n];
        let mut part = [0f32; 16];
        for (w, x) in row[..full].chunks_exact(16).zip(vb.chunks_exact(16)) {
            for k in 0..16 {
                part[k] += f32::from(w[k]) * x[k];
            }
        }
        finish(&part, row, r, &mut acc[r]);
    }
}

/// [`matvec_body`] on f32 or int8 rows, on AVX2 where the CPU has it.
fn matvec_add<T: Copy>(m: &[T], v: &[f32], scale: Option<&[f32]>, acc: &mut [f32])
where
    f32: From<T>,
{
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        #[target_feature(enable = "avx2")]
        fn avx2<T: Copy>(m: &[T], v: &[f32], scale: Option<&[f32]>, acc: &mut [f32])
        where
            f32: From<T>,
        {
            matvec_body(m, v, scale, acc)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected just above.
            return unsafe { avx2(m, v, scale, acc) };
        }
    }
    matvec_body(m, v, scale, acc)
}

/// Clamps to `[-c, c]` when a cell clip is set.
fn clip(v: &mut [f32], c: Option<f32>) {
    if let Some(c) = c {
        v.iter_mut().for_each(|x| *x = x.clamp(-c, c));
    }
}

/// Runs the op. `ins`: X, W, R, bias, initial h, and for an LSTM initial c (and P); `outs`: Y, last h
/// (and an LSTM's last c).
#[allow(clippy::too_many_arguments)]
pub fn run(
    g: &Gemm,
    par: &Par,
    prep: &RnnPrep,
    direction: Direction,
    cell_clip: Option<f32>,
    ins: &[View],
    y: ViewMut,
    outs: &mut [ViewMut],
    scratch: &mut [f32],
) {
    let z = Dims::of(ins[0].shape, ins[1].shape, prep.cell);
    let step = Step {
        g,
        prep,
        z,
        direction,
        cell_clip,
        ins,
        y: SyncPtr(y.data.as_mut_ptr()),
        yh: SyncPtr(outs[0].data.as_mut_ptr()),
        yc: outs.get_mut(1).map(|o| SyncPtr(o.data.as_mut_ptr())),
    };
    if directions_in_parallel(z, par.threads()) {
        let per = dir_scratch(g, z, 1);
        assert!(scratch.len() >= 2 * per, "recurrent op scratch too small");
        let sp = SyncPtr(scratch.as_mut_ptr());
        par.run_on(2, &|dir| {
            // SAFETY: each direction takes its own `per` floats of scratch.
            let s = unsafe { core::slice::from_raw_parts_mut(sp.get().add(dir * per), per) };
            // SAFETY: the directions write disjoint parts of Y and of the states (`Step::run`).
            unsafe { step.run(&Par::single(), dir, s) };
        });
    } else {
        for dir in 0..z.d {
            // SAFETY: one direction at a time.
            unsafe { step.run(par, dir, scratch) };
        }
    }
}

/// One recurrent op's operands, shared by its directions.
struct Step<'a> {
    g: &'a Gemm,
    prep: &'a RnnPrep,
    z: Dims,
    direction: Direction,
    cell_clip: Option<f32>,
    ins: &'a [View<'a>],
    /// Y `[S, D, B, H]`, last h and (LSTM) last c `[D, B, H]`.
    y: SyncPtr,
    yh: SyncPtr,
    yc: Option<SyncPtr>,
}

/// The integer-operand buffers of the int8 recurrence: h's codes and the row sums.
struct Int8Step<'a> {
    qh: &'a mut [i16],
    sums: &'a mut [f32],
    /// The scale of the codes in `qh`.
    sh: f32,
}

/// Whether [`Step::add_recurrent`] quantizes its vector or reuses the codes of the last call (the same
/// vector: a linear-before-reset GRU multiplies h by all three gates' rows, in two calls).
#[derive(Clone, Copy, PartialEq)]
enum Codes {
    Make,
    Reuse,
}

impl Step<'_> {
    /// `acc += R[rows]·v` for direction `dir`'s recurrent rows `rows` (of its `G·H`): on R's stored int8
    /// rows with `v` as 15-bit codes where v is finite (made here, or with [`Codes::Reuse`] those of the
    /// last call, on the same v), else on the f32 rows (or the int8 rows widened as they are read).
    fn add_recurrent(
        &self,
        dir: usize,
        rows: core::ops::Range<usize>,
        (v, codes): (&[f32], Codes),
        buf: &mut Int8Step,
        acc: &mut [f32],
    ) {
        let (h, gh) = (self.z.h, self.z.gates * self.z.h);
        let at = dir * gh + rows.start..dir * gh + rows.end;
        let vals = at.start * h..at.end * h;
        match &self.prep.r8 {
            Some((q, sc)) if v.iter().all(|x| x.is_finite()) => {
                if codes == Codes::Make {
                    buf.sh = quantize_h(v, buf.qh);
                }
                let sums = &mut buf.sums[..rows.len()];
                dot_rows_i8_i16(self.g.isa, &q[vals], buf.qh, sums);
                for ((a, &s), &t) in acc.iter_mut().zip(&sc[at]).zip(&*sums) {
                    *a += s * buf.sh * t;
                }
            }
            // (an infinite or NaN h, only from the initial state, goes through in f32)
            Some((q, sc)) => matvec_add(&q[vals], v, Some(&sc[at]), acc),
            None => matvec_add(&self.ins[2].data[vals], v, None, acc),
        }
    }

    /// Direction `dir`: the input side as one GEMM, then the steps.
    ///
    /// # Safety
    /// The output pointers hold the op's output shapes; no other thread writes direction `dir`'s parts
    /// of them (Y's `[.., dir, ..]` rows, the states' `[dir, ..]`) meanwhile.
    unsafe fn run(&self, par: &Par, dir: usize, scratch: &mut [f32]) {
        let (g, prep, z, ins) = (self.g, self.prep, self.z, self.ins);
        let (h, b, sb, gh) = (z.h, z.b, z.s * z.b, z.gates * z.h);
        let (gx, rest) = scratch.split_at_mut(gh * sb);
        let (gate, rest) = rest.split_at_mut(gh * b);
        let (hs, rest) = rest.split_at_mut(b * h);
        let (cs, rest) = rest.split_at_mut(b * h);
        let (qh, rest) = rest.split_at_mut(h.div_ceil(2));
        let (sums, gemm_scratch) = rest.split_at_mut(gh);
        // SAFETY: `qh` holds h.div_ceil(2) floats, room for h i16 at an alignment f32 exceeds.
        let qh = unsafe { core::slice::from_raw_parts_mut(qh.as_mut_ptr().cast::<i16>(), h) };
        let mut buf = Int8Step { qh, sums, sh: 0.0 };
        // the inputs' side of every step at once, a step's gates contiguous (each step then reads one
        // row, not G·H values S·B apart): gx[t·B + n][r] = x[t][n]·W[r] + Wb[r] + Rb[r]
        gemm::gemm(
            g,
            par,
            (sb, gh, z.i),
            ASrc::Strided(ins[0].data, z.i, 1),
            BSrc::Packed(&prep.w[dir * prep.w_stride..(dir + 1) * prep.w_stride]),
            gx,
            gh,
            Epilogue {
                col_bias: Some(&prep.bias[dir * gh..(dir + 1) * gh]),
                ..Epilogue::default()
            },
            gemm_scratch,
        );
        let reverse = self.direction == Direction::Reverse || dir == 1;
        hs.copy_from_slice(&ins[4].data[dir * b * h..(dir + 1) * b * h]);
        if prep.cell == Cell::Lstm {
            cs.copy_from_slice(&ins[5].data[dir * b * h..(dir + 1) * b * h]);
        }
        for step in 0..z.s {
            let t = if reverse { z.s - 1 - step } else { step };
            for n in 0..b {
                let gn = &mut gate[n * gh..(n + 1) * gh];
                gn.copy_from_slice(&gx[(t * b + n) * gh..][..gh]);
                let hn = &hs[n * h..(n + 1) * h];
                match prep.cell {
                    Cell::Lstm => {
                        self.add_recurrent(dir, 0..gh, (hn, Codes::Make), &mut buf, gn);
                        self.lstm_cell(dir, gn, &mut cs[n * h..(n + 1) * h]);
                    }
                    Cell::Gru {
                        linear_before_reset,
                    } => {
                        let tmp = &mut cs[n * h..(n + 1) * h];
                        // z and r
                        self.add_recurrent(
                            dir,
                            0..2 * h,
                            (hn, Codes::Make),
                            &mut buf,
                            &mut gn[..2 * h],
                        );
                        clip(&mut gn[..2 * h], self.cell_clip);
                        gemm::apply_act(&mut gn[..2 * h], Unary::Sigmoid);
                        let (gz, rest) = gn.split_at_mut(h);
                        let (gr, gc) = rest.split_at_mut(h);
                        if linear_before_reset {
                            // n = tanh(gx_h + r ⊙ (R_h·h + Rb_h))
                            tmp.copy_from_slice(&prep.rb_h[dir * h..(dir + 1) * h]);
                            self.add_recurrent(
                                dir,
                                2 * h..3 * h,
                                (hn, Codes::Reuse),
                                &mut buf,
                                tmp,
                            );
                            for u in 0..h {
                                gc[u] += gr[u] * tmp[u];
                            }
                        } else {
                            // n = tanh(gx_h + R_h·(r ⊙ h))
                            for u in 0..h {
                                tmp[u] = gr[u] * hn[u];
                            }
                            self.add_recurrent(dir, 2 * h..3 * h, (tmp, Codes::Make), &mut buf, gc);
                        }
                        clip(gc, self.cell_clip);
                        gemm::apply_act(gc, Unary::Tanh);
                        // h' = (1 − z) ⊙ n + z ⊙ h, into the r part (free now; the next batch rows
                        // still read the old h from `hs`)
                        for u in 0..h {
                            gr[u] = (1.0 - gz[u]) * gc[u] + gz[u] * hn[u];
                        }
                    }
                    Cell::Rnn => {
                        self.add_recurrent(dir, 0..h, (hn, Codes::Make), &mut buf, gn);
                        clip(gn, self.cell_clip);
                        gemm::apply_act(gn, Unary::Tanh);
                    }
                }
                let at = prep.cell.h_at(h);
                let out = &gate[n * gh + at..][..h];
                // SAFETY: row (t, dir, n) of Y is in bounds and this direction's (the caller's contract).
                let dst = unsafe {
                    core::slice::from_raw_parts_mut(
                        self.y.get().add(((t * z.d + dir) * b + n) * h),
                        h,
                    )
                };
                dst.copy_from_slice(out);
            }
            for n in 0..b {
                let at = n * gh + prep.cell.h_at(h);
                hs[n * h..(n + 1) * h].copy_from_slice(&gate[at..][..h]);
            }
        }
        // SAFETY: the states' direction `dir` block is in bounds and this direction's.
        unsafe {
            core::slice::from_raw_parts_mut(self.yh.get().add(dir * b * h), b * h)
                .copy_from_slice(hs);
            if let Some(yc) = &self.yc {
                core::slice::from_raw_parts_mut(yc.get().add(dir * b * h), b * h)
                    .copy_from_slice(cs);
            }
        }
    }

    /// An LSTM's gates and cell for one batch row: `gn` holds the pre-activations (i, o, f, c), `cn`
    /// the cell state, updated; the new h goes to `gn`'s o part.
    fn lstm_cell(&self, dir: usize, gn: &mut [f32], cn: &mut [f32]) {
        let h = self.z.h;
        let p = self
            .ins
            .get(6)
            .map(|p| &p.data[dir * 3 * h..(dir + 1) * 3 * h]);
        let (gi, rest) = gn.split_at_mut(h);
        let (go, rest) = rest.split_at_mut(h);
        let (gf, gc) = rest.split_at_mut(h);
        if let Some(p) = p {
            for u in 0..h {
                gi[u] += p[u] * cn[u];
                gf[u] += p[2 * h + u] * cn[u];
            }
        }
        for v in [&mut *gi, &mut *gf, &mut *gc] {
            clip(v, self.cell_clip);
        }
        gemm::apply_act(gi, Unary::Sigmoid);
        gemm::apply_act(gf, Unary::Sigmoid);
        gemm::apply_act(gc, Unary::Tanh);
        for u in 0..h {
            cn[u] = gf[u] * cn[u] + gi[u] * gc[u];
        }
        if let Some(p) = p {
            for u in 0..h {
                go[u] += p[h + u] * cn[u];
            }
        }
        clip(go, self.cell_clip);
        gemm::apply_act(go, Unary::Sigmoid);
        // h = o · tanh(c) (tanh(c) in `gc`, free now)
        gc.copy_from_slice(cn);
        gemm::apply_act(gc, Unary::Tanh);
        for u in 0..h {
            go[u] *= gc[u];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels;

    /// ONNX's LSTM equations in float64, written out plainly (the reference the kernel is held to).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        d: usize,
        (s, b, i, h): (usize, usize, usize, usize),
        x: &[f32],
        w: &[f32],
        r: &[f32],
        bias: &[f32],
        h0: &[f32],
        c0: &[f32],
        p: Option<&[f32]>,
        clip: Option<f32>,
        reverse_only: bool,
        h_codes: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let cl = |v: f64| clip.map_or(v, |c| v.clamp(-c as f64, c as f64));
        let mut y = vec![0f64; s * d * b * h];
        let (mut yh, mut yc) = (vec![0f64; d * b * h], vec![0f64; d * b * h]);
        for dir in 0..d {
            let reverse = reverse_only || dir == 1;
            for n in 0..b {
                let mut hv: Vec<f64> = (0..h).map(|u| h0[(dir * b + n) * h + u] as f64).collect();
                let mut cv: Vec<f64> = (0..h).map(|u| c0[(dir * b + n) * h + u] as f64).collect();
                for step in 0..s {
                    let t = if reverse { s - 1 - step } else { step };
                    // with `h_codes`, R multiplies h as the int8 recurrence carries it: 15-bit codes
                    // of max|h|
                    let top = hv.iter().fold(0f64, |a, v| a.max(v.abs()));
                    let hr: Vec<f64> = match h_codes && top > 0.0 {
                        true => hv
                            .iter()
                            .map(|v| (v * 32767.0 / top).round() * top / 32767.0)
                            .collect(),
                        false => hv.clone(),
                    };
                    let pre = |gate: usize, u: usize| -> f64 {
                        let row = gate * h + u;
                        let mut v =
                            bias[dir * 8 * h + row] as f64 + bias[dir * 8 * h + 4 * h + row] as f64;
                        for q in 0..i {
                            v += w[(dir * 4 * h + row) * i + q] as f64
                                * x[(t * b + n) * i + q] as f64;
                        }
                        for q in 0..h {
                            v += r[(dir * 4 * h + row) * h + q] as f64 * hr[q];
                        }
                        v
                    };
                    let pp =
                        |k: usize, u: usize| p.map_or(0.0, |p| p[dir * 3 * h + k * h + u] as f64);
                    let mut nh = vec![0f64; h];
                    let mut nc = vec![0f64; h];
                    for u in 0..h {
                        let ig = sig(cl(pre(0, u) + pp(0, u) * cv[u]));
                        let fg = sig(cl(pre(2, u) + pp(2, u) * cv[u]));
                        let cg = cl(pre(3, u)).tanh();
                        nc[u] = fg * cv[u] + ig * cg;
                        let og = sig(cl(pre(1, u) + pp(1, u) * nc[u]));
                        nh[u] = og * nc[u].tanh();
                    }
                    hv = nh;
                    cv = nc;
                    for u in 0..h {
                        y[((t * d + dir) * b + n) * h + u] = hv[u];
                    }
                }
                for u in 0..h {
                    yh[(dir * b + n) * h + u] = hv[u];
                    yc[(dir * b + n) * h + u] = cv[u];
                }
            }
        }
        (y, yh, yc)
    }

    /// Seeded values in [-a, a).
    fn vals(n: usize, seed: u64, a: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
            })
            .collect()
    }

    fn view<'a>(data: &'a [f32], shape: &'a [usize]) -> View<'a> {
        View { data, shape }
    }

    /// R (`[d, rows, h]`, seeded, in [-0.4, 0.4)) as int8 with one scale per gate row (shared by the
    /// directions, as the tool stores it), those scales, and the f32 values it stands for.
    fn int8_r(d: usize, rows: usize, h: usize, seed: u64) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let raw = vals(d * rows * h, seed, 0.4);
        let scale: Vec<f32> = (0..rows)
            .map(|row| {
                (0..d)
                    .flat_map(|k| &raw[(k * rows + row) * h..][..h])
                    .fold(0f32, |a, v| a.max(v.abs()))
                    / 127.0
            })
            .collect();
        let q: Vec<i8> = raw
            .iter()
            .enumerate()
            .map(|(k, v)| (v / scale[(k / h) % rows]).round() as i8)
            .collect();
        let r = q
            .iter()
            .enumerate()
            .map(|(k, &v)| v as f32 * scale[(k / h) % rows])
            .collect();
        (q, scale, r)
    }

    /// One op prepared twice: on f32 R, and on R's int8 rows (`q`, its shape, its row scales).
    fn preps(
        g: &Gemm,
        cell: Cell,
        (w, ws): (&[f32], &[usize]),
        bias: &[f32],
        (q, rs, scale): (&[i8], &[usize], &[f32]),
    ) -> (RnnPrep, RnnPrep) {
        let prep = prepare(g, cell, w, ws, bias);
        let mut prep8 = prepare(g, cell, w, ws, bias);
        prep8.use_int8_recurrence(
            q,
            rs,
            &crate::ir::QParams {
                scale: scale.to_vec(),
                zero_point: vec![0; rs[1]],
                axis: Some(1),
            },
        );
        assert!(prep8.r8.is_some());
        (prep, prep8)
    }

    /// Runs one op on f32 R (`prep`) and on int8 R (`prep8`), on one and two threads, and holds Y and
    /// the states to their float64 results (`want32` / `want8`: Y, then the states).
    fn check_runs(
        g: &Gemm,
        ins: &[View],
        (dirn, clip): (Direction, Option<f32>),
        (prep, prep8): (&RnnPrep, &RnnPrep),
        (want32, want8): (&[Vec<f64>], &[Vec<f64>]),
        ctx: &dyn Fn() -> alloc::string::String,
    ) {
        let pool = crate::cpu::pool::Pool::new(2).unwrap();
        let (s, hs) = (ins[0].shape[0], ins[4].shape);
        let (d, b, h) = (hs[0], hs[1], hs[2]);
        let ys = [s, d, b, h];
        for par in [Par::single(), Par { pool: Some(&pool) }] {
            for (form, p, want) in [("f32 R", prep, want32), ("int8 R", prep8, want8)] {
                let n = scratch(g, p.cell, ins[0].shape, ins[1].shape, par.threads());
                let mut scratch = vec![0f32; n];
                let mut y = vec![0f32; s * d * b * h];
                let mut st: Vec<Vec<f32>> =
                    (1..want.len()).map(|_| vec![0f32; d * b * h]).collect();
                let mut states: Vec<ViewMut> = st
                    .iter_mut()
                    .map(|v| ViewMut { data: v, shape: hs })
                    .collect();
                let yv = ViewMut {
                    data: &mut y,
                    shape: &ys,
                };
                run(g, &par, p, dirn, clip, ins, yv, &mut states, &mut scratch);
                drop(states);
                let mut outs: Vec<(&str, &[f32], &[f64])> = vec![("Y", &y, &want[0])];
                for (k, v) in st.iter().enumerate() {
                    outs.push((["Y_h", "Y_c"][k], v, &want[k + 1]));
                }
                assert_near(&outs, &|| {
                    alloc::format!("{}, {form}, {} thread(s)", ctx(), par.threads())
                });
            }
        }
    }

    /// Each output within 1e-5 (relative to its largest value) of its float64 reference; `ctx` names
    /// the case.
    fn assert_near(outs: &[(&str, &[f32], &[f64])], ctx: &dyn Fn() -> alloc::string::String) {
        for (what, got, want) in outs {
            let top = want.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
            let err = got
                .iter()
                .zip(want.iter())
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0f64, f64::max);
            assert!(err <= 1e-5 * top, "{}: {what} off by {err:e}", ctx());
        }
    }

    /// Every direction, peepholes and clip on and off, batch 1 and 3, hidden sizes with vector tails,
    /// one and two threads: all three outputs within 1e-5 (relative to the output's largest value) of
    /// the float64 equations.
    #[test]
    fn lstm_matches_float64_equations() {
        let g = kernels::gemm_for(crate::cpu::caps::detect());
        for (case, &(s, b, i, h, dirn, peep, clip)) in [
            (5, 1, 7, 4, Direction::Forward, false, None),
            (4, 3, 16, 17, Direction::Reverse, true, None),
            (6, 2, 33, 20, Direction::Bidirectional, true, Some(1.5f32)),
            (3, 1, 40, 32, Direction::Bidirectional, false, None),
            (1, 2, 3, 5, Direction::Forward, false, Some(0.5)),
        ]
        .iter()
        .enumerate()
        {
            let d = dirn.count();
            let x = vals(s * b * i, case as u64 + 1, 1.0);
            let w = vals(d * 4 * h * i, case as u64 + 11, 0.4);
            // the recurrence runs on R's f32 values or on its int8 rows and must give the equations'
            // result on those values
            let (rq, rscale, r) = int8_r(d, 4 * h, h, case as u64 + 21);
            let bias = vals(d * 8 * h, case as u64 + 31, 0.5);
            let h0 = vals(d * b * h, case as u64 + 41, 0.5);
            let c0 = vals(d * b * h, case as u64 + 51, 0.5);
            let pw = vals(d * 3 * h, case as u64 + 61, 0.5);
            let (xs, ws, rs, bs, hs, ps) = (
                [s, b, i],
                [d, 4 * h, i],
                [d, 4 * h, h],
                [d, 8 * h],
                [d, b, h],
                [d, 3 * h],
            );
            let (prep, prep8) = preps(&g, Cell::Lstm, (&w, &ws), &bias, (&rq, &rs, &rscale));
            let mut ins = vec![
                view(&x, &xs),
                view(&w, &ws),
                view(&r, &rs),
                view(&bias, &bs),
                view(&h0, &hs),
                view(&c0, &hs),
            ];
            if peep {
                ins.push(view(&pw, &ps));
            }
            let want = |h_codes| {
                reference(
                    d,
                    (s, b, i, h),
                    &x,
                    &w,
                    &r,
                    &bias,
                    &h0,
                    &c0,
                    peep.then_some(&pw[..]),
                    clip,
                    dirn == Direction::Reverse,
                    h_codes,
                )
            };
            let (want32, want8) = (want(false), want(true));
            check_runs(
                &g,
                &ins,
                (dirn, clip),
                (&prep, &prep8),
                (
                    &[want32.0, want32.1, want32.2],
                    &[want8.0, want8.1, want8.2],
                ),
                &|| {
                    alloc::format!("case {case} ({s}x{b}x{i}, hidden {h}, {dirn:?}, peepholes {peep}, clip {clip:?})")
                },
            );
        }
    }

    /// `v` as the int8 recurrence carries it when `on`: 15-bit codes of max|v|.
    fn codes(v: &[f64], on: bool) -> Vec<f64> {
        let top = v.iter().fold(0f64, |a, x| a.max(x.abs()));
        if !on || top == 0.0 {
            return v.to_vec();
        }
        v.iter()
            .map(|x| (x * 32767.0 / top).round() * top / 32767.0)
            .collect()
    }

    /// ONNX's GRU equations in float64, written out plainly (both `linear_before_reset` forms).
    #[allow(clippy::too_many_arguments)]
    fn gru_reference(
        d: usize,
        (s, b, i, h): (usize, usize, usize, usize),
        x: &[f32],
        w: &[f32],
        r: &[f32],
        bias: &[f32],
        h0: &[f32],
        clip: Option<f32>,
        reverse_only: bool,
        lbr: bool,
        h_codes: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let cl = |v: f64| clip.map_or(v, |c| v.clamp(-c as f64, c as f64));
        let mut y = vec![0f64; s * d * b * h];
        let mut yh = vec![0f64; d * b * h];
        for dir in 0..d {
            let reverse = reverse_only || dir == 1;
            let wb = |row: usize| bias[dir * 6 * h + row] as f64;
            let rb = |row: usize| bias[dir * 6 * h + 3 * h + row] as f64;
            let rdot = |row: usize, v: &[f64]| -> f64 {
                (0..h)
                    .map(|q| r[(dir * 3 * h + row) * h + q] as f64 * v[q])
                    .sum()
            };
            for n in 0..b {
                let mut hv: Vec<f64> = (0..h).map(|u| h0[(dir * b + n) * h + u] as f64).collect();
                for step in 0..s {
                    let t = if reverse { s - 1 - step } else { step };
                    let wx = |row: usize| -> f64 {
                        (0..i)
                            .map(|q| {
                                w[(dir * 3 * h + row) * i + q] as f64
                                    * x[(t * b + n) * i + q] as f64
                            })
                            .sum::<f64>()
                            + wb(row)
                    };
                    let hq = codes(&hv, h_codes);
                    let zg: Vec<f64> = (0..h)
                        .map(|u| sig(cl(wx(u) + rdot(u, &hq) + rb(u))))
                        .collect();
                    let rg: Vec<f64> = (0..h)
                        .map(|u| sig(cl(wx(h + u) + rdot(h + u, &hq) + rb(h + u))))
                        .collect();
                    let rh: Vec<f64> = (0..h).map(|u| rg[u] * hv[u]).collect();
                    let rhq = codes(&rh, h_codes);
                    let nh: Vec<f64> = (0..h)
                        .map(|u| {
                            let row = 2 * h + u;
                            let pre = if lbr {
                                wx(row) + rg[u] * (rdot(row, &hq) + rb(row))
                            } else {
                                wx(row) + rdot(row, &rhq) + rb(row)
                            };
                            cl(pre).tanh()
                        })
                        .collect();
                    hv = (0..h)
                        .map(|u| (1.0 - zg[u]) * nh[u] + zg[u] * hv[u])
                        .collect();
                    for u in 0..h {
                        y[((t * d + dir) * b + n) * h + u] = hv[u];
                    }
                }
                for u in 0..h {
                    yh[(dir * b + n) * h + u] = hv[u];
                }
            }
        }
        (y, yh)
    }

    /// GRU: every direction, both `linear_before_reset` forms, clip on and off, batch 1 and 3, hidden
    /// sizes with vector tails, one and two threads, f32 and int8 R: Y and the last h within 1e-5
    /// (relative to the output's largest value) of the float64 equations.
    #[test]
    fn gru_matches_float64_equations() {
        let g = kernels::gemm_for(crate::cpu::caps::detect());
        for (case, &(s, b, i, h, dirn, lbr, clip)) in [
            (5, 1, 7, 4, Direction::Forward, false, None),
            (4, 3, 16, 17, Direction::Reverse, true, None),
            (6, 2, 33, 20, Direction::Bidirectional, true, Some(1.5f32)),
            (3, 1, 40, 32, Direction::Bidirectional, false, None),
            (2, 2, 3, 5, Direction::Forward, true, Some(0.5)),
        ]
        .iter()
        .enumerate()
        {
            let d = dirn.count();
            let cell = Cell::Gru {
                linear_before_reset: lbr,
            };
            let x = vals(s * b * i, case as u64 + 101, 1.0);
            let w = vals(d * 3 * h * i, case as u64 + 111, 0.4);
            let (rq, rscale, r) = int8_r(d, 3 * h, h, case as u64 + 121);
            let bias = vals(d * 6 * h, case as u64 + 131, 0.5);
            let h0 = vals(d * b * h, case as u64 + 141, 0.5);
            let (xs, ws, rs, bs, hs) = (
                [s, b, i],
                [d, 3 * h, i],
                [d, 3 * h, h],
                [d, 6 * h],
                [d, b, h],
            );
            let (prep, prep8) = preps(&g, cell, (&w, &ws), &bias, (&rq, &rs, &rscale));
            let ins = [
                view(&x, &xs),
                view(&w, &ws),
                view(&r, &rs),
                view(&bias, &bs),
                view(&h0, &hs),
            ];
            let want = |h_codes| {
                gru_reference(
                    d,
                    (s, b, i, h),
                    &x,
                    &w,
                    &r,
                    &bias,
                    &h0,
                    clip,
                    dirn == Direction::Reverse,
                    lbr,
                    h_codes,
                )
            };
            let (want32, want8) = (want(false), want(true));
            check_runs(
                &g,
                &ins,
                (dirn, clip),
                (&prep, &prep8),
                (&[want32.0, want32.1], &[want8.0, want8.1]),
                &|| {
                    alloc::format!("case {case} ({s}x{b}x{i}, hidden {h}, {dirn:?}, linear_before_reset {lbr}, clip {clip:?})")
                },
            );
        }
    }

    /// Plain RNN: `h = tanh(W·x + Wb + R·h + Rb)` (clipped before the tanh when set), every direction,
    /// batch 1 and 2, one and two threads, f32 and int8 R: Y and the last h within 1e-5 of float64.
    #[test]
    fn rnn_matches_float64_equations() {
        let g = kernels::gemm_for(crate::cpu::caps::detect());
        for (case, &(s, b, i, h, dirn, clip)) in [
            (5, 1, 7, 4, Direction::Forward, None),
            (4, 2, 16, 17, Direction::Reverse, Some(0.8f32)),
            (6, 2, 33, 20, Direction::Bidirectional, None),
        ]
        .iter()
        .enumerate()
        {
            let d = dirn.count();
            let x = vals(s * b * i, case as u64 + 201, 1.0);
            let w = vals(d * h * i, case as u64 + 211, 0.4);
            let (rq, rscale, r) = int8_r(d, h, h, case as u64 + 221);
            let bias = vals(d * 2 * h, case as u64 + 231, 0.5);
            let h0 = vals(d * b * h, case as u64 + 241, 0.5);
            let (xs, ws, rs, bs, hs) = ([s, b, i], [d, h, i], [d, h, h], [d, 2 * h], [d, b, h]);
            let (prep, prep8) = preps(&g, Cell::Rnn, (&w, &ws), &bias, (&rq, &rs, &rscale));
            let ins = [
                view(&x, &xs),
                view(&w, &ws),
                view(&r, &rs),
                view(&bias, &bs),
                view(&h0, &hs),
            ];
            // the equations, with R's product on h as the int8 recurrence carries it when `h_codes`
            let want = |h_codes: bool| {
                let cl = |v: f64| clip.map_or(v, |c| v.clamp(-c as f64, c as f64));
                let (mut y, mut yh) = (vec![0f64; s * d * b * h], vec![0f64; d * b * h]);
                for dir in 0..d {
                    let reverse = dirn == Direction::Reverse || dir == 1;
                    for n in 0..b {
                        let mut hv: Vec<f64> =
                            (0..h).map(|u| h0[(dir * b + n) * h + u] as f64).collect();
                        for step in 0..s {
                            let t = if reverse { s - 1 - step } else { step };
                            let hq = codes(&hv, h_codes);
                            hv = (0..h)
                                .map(|u| {
                                    let row = dir * h + u;
                                    let mut v = bias[dir * 2 * h + u] as f64
                                        + bias[dir * 2 * h + h + u] as f64;
                                    for q in 0..i {
                                        v += w[row * i + q] as f64 * x[(t * b + n) * i + q] as f64;
                                    }
                                    for q in 0..h {
                                        v += r[row * h + q] as f64 * hq[q];
                                    }
                                    cl(v).tanh()
                                })
                                .collect();
                            y[((t * d + dir) * b + n) * h..][..h].copy_from_slice(&hv);
                        }
                        yh[(dir * b + n) * h..][..h].copy_from_slice(&hv);
                    }
                }
                (y, yh)
            };
            let (want32, want8) = (want(false), want(true));
            check_runs(
                &g,
                &ins,
                (dirn, clip),
                (&prep, &prep8),
                (&[want32.0, want32.1], &[want8.0, want8.1]),
                &|| {
                    alloc::format!(
                        "RNN case {case} ({s}x{b}x{i}, hidden {h}, {dirn:?}, clip {clip:?})"
                    )
                },
            );
        }
    }

    /// h's codes stay within ±32767 and keep its shape for any finite h, however small its largest value
    /// (32767 / max|h| overflows to infinity below ~1e-34).
    #[test]
    fn h_codes_hold_for_tiny_states() {
        for top in [1.0f32, 1e-20, 1e-36] {
            let h = [top, -top, top / 2.0, 0.0];
            let mut q = [0i16; 4];
            let s = quantize_h(&h, &mut q);
            assert!(!q.contains(&i16::MIN), "{top:e}: {q:?}");
            assert_eq!((q[0], q[1], q[3]), (32767, -32767, 0), "{top:e}");
            assert!((q[2] as i32 - 16384).abs() <= 1, "{top:e}: {q:?}");
            assert!(s > 0.0, "{top:e}: scale {s:e}");
        }
    }

    /// The int8 recurrence's row sums on every instruction-set path this CPU runs equal the exact
    /// reference (bit for bit), lengths with and without vector tails and across i32 chunks, at the
    /// extremes of both operands (-128 · -32767 over 1100 columns: an i32 lane per chunk must not wrap).
    #[test]
    fn int8_row_sums_are_exact_on_every_path() {
        let best = crate::cpu::caps::detect();
        let mut isas = alloc::vec![Isa::Scalar, best];
        if best == Isa::AvxVnni {
            isas.push(Isa::Avx2);
        }
        if best == Isa::Dotprod {
            isas.push(Isa::Neon);
        }
        for n in [1usize, 15, 16, 17, 40, 512, 513, 1100] {
            let rows = 9;
            let m: Vec<i8> = vals(rows * n, n as u64 + 7, 128.0)
                .iter()
                .map(|&x| x.floor() as i8)
                .collect();
            let h: Vec<i16> = vals(n, n as u64 + 8, 32767.0)
                .iter()
                .map(|&x| x.round() as i16)
                .collect();
            for (m, h) in [
                (m, h),
                (vec![-128i8; rows * n], vec![-32767i16; n]),
                (vec![127i8; rows * n], vec![-32767i16; n]),
            ] {
                let exact: Vec<i64> = (0..rows)
                    .map(|r| (0..n).map(|c| m[r * n + c] as i64 * h[c] as i64).sum())
                    .collect();
                let mut want = vec![0f32; rows];
                dot_rows_i8_i16_ref(&m, &h, &mut want);
                assert!(want.iter().zip(&exact).all(|(w, e)| *w == *e as f32));
                for &isa in &isas {
                    let mut got = vec![1f32; rows];
                    dot_rows_i8_i16(isa, &m, &h, &mut got);
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{} n={n}: {got:?} vs {want:?}",
                        isa.name()
                    );
                }
            }
        }
    }

    /// The recurrence's matrix-vector product as dispatched (AVX2 where present) gives the portable
    /// body's bits, f32 and int8 rows, with and without row scales, lengths with and without tails.
    #[test]
    fn matvec_dispatch_equals_the_portable_body() {
        for n in [1usize, 15, 16, 17, 40, 512] {
            let rows = 9;
            let v = vals(n, n as u64, 1.0);
            let mf = vals(rows * n, n as u64 + 1, 0.5);
            let mq: Vec<i8> = vals(rows * n, n as u64 + 2, 127.0)
                .iter()
                .map(|&x| x as i8)
                .collect();
            let sc = vals(rows, n as u64 + 3, 0.01);
            let start = vals(rows, n as u64 + 4, 1.0);
            for scale in [None, Some(&sc[..])] {
                let (mut a, mut b) = (start.clone(), start.clone());
                matvec_add(&mf, &v, scale, &mut a);
                matvec_body(&mf, &v, scale, &mut b);
                assert!(
                    a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "f32 n={n}"
                );
                let (mut a, mut b) = (start.clone(), start.clone());
                matvec_add(&mq, &v, scale, &mut a);
                matvec_body(&mq, &v, scale, &mut b);
                assert!(
                    a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "i8 n={n}"
                );
            }
        }
    }
}
