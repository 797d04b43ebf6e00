//! Sessions: a model prepared for running (weights packed, arena sized, threads started). After
//! [`Session::new`], [`Session::run_into`] allocates nothing.
use crate::bail;
use crate::cpu::caps::{self, Isa};
use crate::cpu::kernels::{self, Gemm};
use crate::cpu::ops::{self, quant, Prepared, View, ViewMut};
use crate::cpu::qgemm::{self, QGemm};
use crate::cpu::Par;
use crate::error::Result;
use crate::ir::{DType, Op};
use crate::model::Model;
use alloc::vec;
use alloc::vec::Vec;

/// Most inputs or outputs one node may have (node views live on the stack during `run`).
pub const MAX_NODE_IO: usize = 64;

/// Options for a session.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Threads that split each op's output (1 = the caller only). Ignored without `std`.
    pub threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { threads: 1 }
    }
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

enum Arena<'m> {
    Owned(Vec<Line>),
    Borrowed(&'m mut [u8]),
}

enum Const<'m> {
    Borrowed(&'m [f32]),
    Owned(Vec<f32>),
}

impl Const<'_> {
    fn data(&self) -> &[f32] {
        match self {
            Const::Borrowed(s) => s,
            Const::Owned(v) => v,
        }
    }
}

/// A tensor's values as a node computed them (see [`Session::run_observed`]).
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    /// A float tensor.
    F32(&'a [f32]),
    /// An int8 tensor (its quantization parameters are on the graph's tensor).
    I8(&'a [i8]),
    /// An int16 tensor (format 10; its scale is on the graph's tensor).
    I16(&'a [i16]),
}

/// The callback of [`Session::run_observed`]: (node index, output tensor index, values).
pub type Observe<'a> = &'a mut dyn FnMut(usize, u32, Values);

/// A model ready to run on the CPU. One per thread; the [`Model`] is shared.
pub struct Session<'m> {
    model: &'m Model<'m>,
    gemm: Gemm,
    qgemm: QGemm,
    isa: Isa,
    consts: Vec<Option<Const<'m>>>,
    shapes: Vec<Vec<usize>>,
    prepared: Vec<Prepared>,
    arena: Arena<'m>,
    scratch: Vec<f32>,
    packed_bytes: usize,
    #[cfg(feature = "std")]
    pool: Option<crate::cpu::pool::Pool>,
    /// Accumulated nanoseconds per node while profiling is on.
    #[cfg(feature = "std")]
    profile: Option<Vec<u64>>,
}

/// Little-endian f16 bytes as f32 values (exact: every f16 is an f32).
pub(crate) fn widen_f16(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// Constant `i` as the f32 values a float op reads, where it is stored narrower: f16, or int8 with
/// its scales when `as_float` ([`crate::model::read_as_float`]) says a float op reads it. `None` for
/// f32 constants (read in place) and for int8 ones only integer ops read.
pub(crate) fn widen_const(model: &Model, i: usize, as_float: &[bool]) -> Option<Vec<f32>> {
    let t = &model.graph.tensors[i];
    match t.dtype {
        DType::F16 => Some(widen_f16(model.const_bytes(i))),
        DType::I8 if as_float[i] => t
            .quant
            .as_ref()
            .map(|q| crate::model::widen_i8(model.const_bytes(i), &t.shape, q)),
        _ => None,
    }
}

fn f32s(bytes: &[u8]) -> Const<'_> {
    if (bytes.as_ptr() as usize).is_multiple_of(core::mem::align_of::<f32>()) {
        // SAFETY: aligned for f32, length rounded down to whole floats, every bit pattern is a valid f32,
        // and the bytes are little-endian like the target (big-endian builds are refused in lib.rs).
        Const::Borrowed(unsafe {
            core::slice::from_raw_parts(bytes.as_ptr() as *const f32, bytes.len() / 4)
        })
    } else {
        Const::Owned(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }
}

impl<'m> Session<'m> {
    /// Prepares `model` with an arena the session allocates.
    pub fn new(model: &'m Model<'m>, options: SessionOptions) -> Result<Self> {
        Self::build(model, options, None)
    }

    /// Prepares `model` to run in a caller-provided arena (firmware: a static buffer). The arena needs
    /// [`Session::arena_bytes_needed`] bytes.
    pub fn with_arena(
        model: &'m Model<'m>,
        options: SessionOptions,
        arena: &'m mut [u8],
    ) -> Result<Self> {
        Self::build(model, options, Some(arena))
    }

    /// Bytes a caller arena must have for `model` (planned activations plus 64 for alignment).
    pub fn arena_bytes_needed(model: &Model) -> usize {
        model.plan.arena_bytes as usize + 64
    }

    fn build(
        model: &'m Model<'m>,
        options: SessionOptions,
        arena: Option<&'m mut [u8]>,
    ) -> Result<Self> {
        let g = &model.graph;
        let isa = caps::detect();
        let gemm = kernels::gemm_for(isa);
        let qgemm = qgemm::qgemm_for(isa);
        let threads = if cfg!(feature = "std") {
            options.threads.max(1)
        } else {
            1
        };
        let shapes: Vec<Vec<usize>> = g.tensors.iter().map(|t| t.dims()).collect();
        let mut consts: Vec<Option<Const<'m>>> = Vec::with_capacity(g.tensors.len());
        let as_float = crate::model::read_as_float(g);
        for (i, t) in g.tensors.iter().enumerate() {
            consts.push(match (t.is_const(), t.dtype) {
                (true, DType::F32) => Some(f32s(model.const_bytes(i))),
                (true, DType::F16 | DType::I8) => {
                    widen_const(model, i, &as_float).map(Const::Owned)
                }
                _ => None,
            });
        }
        let mut prepared = Vec::with_capacity(g.nodes.len());
        let mut scratch = 0usize;
        let mut packed_bytes = 0usize;
        for (ni, n) in g.nodes.iter().enumerate() {
            if n.inputs.len() > MAX_NODE_IO || n.outputs.len() > MAX_NODE_IO {
                bail!(
                    Unsupported,
                    "node {ni} \"{}\" has more than {MAX_NODE_IO} inputs or outputs",
                    n.name
                );
            }
            let conv_q = quant::float_conv_to_int8(model, n);
            if crate::cpu::q16::is_q16(model, n) {
                let p = crate::cpu::q16::prepare(isa, model, n, &shapes);
                let (xs, ys) = (
                    &shapes[n.inputs[0] as usize],
                    &shapes[n.outputs[0] as usize],
                );
                scratch =
                    scratch.max(crate::cpu::q16::scratch_bytes(&p, xs, ys, threads).div_ceil(4));
                prepared.push(Prepared::Q16(p));
                continue;
            }
            if quant::is_integer(model, n) {
                let p = quant::prepare(&qgemm, model, n, &shapes);
                let (xs, ys) = (
                    &shapes[n.inputs[0] as usize],
                    &shapes[n.outputs[0] as usize],
                );
                scratch = scratch.max(quant::scratch_bytes(&p, xs, ys, threads).div_ceil(4));
                prepared.push(Prepared::Quant(p));
                continue;
            }
            let ins: Vec<&[usize]> = n
                .inputs
                .iter()
                .map(|&t| shapes[t as usize].as_slice())
                .collect();
            let outs: Vec<&[usize]> = n
                .outputs
                .iter()
                .map(|&t| shapes[t as usize].as_slice())
                .collect();
            let cs: Vec<Option<&[f32]>> = n
                .inputs
                .iter()
                .map(|&t| consts[t as usize].as_ref().map(|c| c.data()))
                .collect();
            let mut p = match cs.get(1).copied().flatten().filter(|_| conv_q) {
                // (the loader checked: pointwise, constant weights)
                Some(w) => {
                    let (s, z) = quant::params(model, n.outputs[0]);
                    let act = match n.op {
                        Op::Conv { act, .. } => act,
                        _ => None,
                    };
                    Prepared::ConvQ(ops::conv::prepare_pointwise(&gemm, w, ins[1]), act, s, z)
                }
                None => ops::prepare(&gemm, &n.op, &ins, &outs, &cs),
            };
            // an LSTM, GRU or RNN whose R is stored int8 runs its recurrence on those bytes; its widened W
            // (packed now) and R are then dropped (ddddocr's recognizer: 25 MB less resident)
            if let (Prepared::Rnn(lp), Some(&r)) = (&mut p, n.inputs.get(2)) {
                let t = &g.tensors[r as usize];
                if let (DType::I8, Some(q)) = (t.dtype, &t.quant) {
                    lp.use_int8_recurrence(quant::i8s(model.const_bytes(r as usize)), ins[2], q);
                }
                if lp.recurrence_is_int8() {
                    for &w in &n.inputs[1..3] {
                        let only_here =
                            g.nodes.iter().filter(|m| m.inputs.contains(&w)).count() == 1;
                        // only the copies widen_const made (an f32 weight at an unaligned
                        // address is owned too, but run reads it from `consts`)
                        let widened = g.tensors[w as usize].dtype != DType::F32;
                        if only_here && widened && consts[w as usize].is_some() {
                            consts[w as usize] = None;
                        }
                    }
                }
            }
            packed_bytes += match &p {
                Prepared::Conv(ops::conv::ConvPrep::Dense { packed, .. })
                | Prepared::ConvQ(packed, ..) => packed.len() * 4,
                Prepared::MatMul(Some(b)) => b.len() * 4,
                _ => 0,
            };
            scratch = scratch.max(ops::scratch(&gemm, &n.op, &p, &ins, &outs, threads));
            prepared.push(p);
        }
        let arena = match arena {
            None => Arena::Owned(vec![
                Line([0; 64]);
                (model.plan.arena_bytes as usize).div_ceil(64)
            ]),
            Some(a) => {
                if a.len() < Self::arena_bytes_needed(model) {
                    bail!(
                        Argument,
                        "caller arena has {} bytes, the model needs {}",
                        a.len(),
                        Self::arena_bytes_needed(model)
                    );
                }
                Arena::Borrowed(a)
            }
        };
        #[cfg(feature = "std")]
        let pool = if threads > 1 {
            Some(
                crate::cpu::pool::Pool::new(threads)
                    .map_err(|e| crate::err!(Argument, "cannot start {threads} threads: {e}"))?,
            )
        } else {
            None
        };
        log::debug!(
            "session: {} path, kernels {} / {}, {threads} thread(s), scratch {} B",
            isa.name(),
            gemm.name,
            qgemm.name,
            scratch * 4
        );
        Ok(Session {
            model,
            gemm,
            qgemm,
            isa,
            consts,
            shapes,
            prepared,
            arena,
            scratch: vec![0.0; scratch],
            packed_bytes,
            #[cfg(feature = "std")]
            pool,
            #[cfg(feature = "std")]
            profile: None,
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    /// The kernel path in use (`scalar`, `avx2`, `avxvnni`, `neon`, `dotprod`).
    pub fn isa(&self) -> &'static str {
        self.isa.name()
    }

    /// The GEMM micro-kernels in use, f32 and int8 (isa_op_tile names, for logs and benches; int8: the
    /// path's kernel for any weights — a weight tensor may take a variant, [`crate::cpu::qgemm::QGemm::for_weights`]).
    pub fn kernels(&self) -> (&'static str, &'static str) {
        (self.gemm.name, self.qgemm.name)
    }

    /// Bytes `run` works in: the planned activation arena plus the per-op scratch.
    pub fn arena_bytes(&self) -> usize {
        self.model.plan.arena_bytes as usize + self.scratch.len() * 4
    }

    /// Bytes of weights repacked for the kernels at session creation.
    pub fn packed_weight_bytes(&self) -> usize {
        self.packed_bytes
    }

    /// Turns per-node timing on (allocates the table now, not in `run`) or off.
    #[cfg(feature = "std")]
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = if on {
            Some(vec![0; self.model.graph.nodes.len()])
        } else {
            None
        };
    }

    /// Accumulated nanoseconds per node (execution order) since profiling was turned on.
    #[cfg(feature = "std")]
    pub fn profile(&self) -> Option<&[u64]> {
        self.profile.as_deref()
    }

    /// Threads in use.
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(p) = &self.pool {
            return p.threads();
        }
        1
    }

    fn arena_base(&mut self) -> *mut u8 {
        match &mut self.arena {
            Arena::Owned(v) => v.as_mut_ptr() as *mut u8,
            Arena::Borrowed(a) => {
                let p = a.as_mut_ptr();
                // SAFETY: the arena was checked to have 64 spare bytes for this alignment.
                unsafe { p.add(p.align_offset(64)) }
            }
        }
    }

    /// Runs the model: `inputs[i]` is graph input i (row-major f32, exactly its element count), and
    /// `outputs[i]` receives graph output i. Allocates nothing.
    pub fn run_into(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        self.run_observed(inputs, outputs, None)
    }

    /// Graph input `i`'s place in the arena (row-major f32, its element count), for filling in place of
    /// passing it to [`Session::run_into`]: a frame decoded or DMA'd straight into it saves a copy and an
    /// input-sized buffer. Then [`Session::run_in_place`]. The arena reuses these bytes once the nodes
    /// that read the input have run (and a previous run's outputs may share them): write the input again
    /// before every run, after reading the outputs you need.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [f32]> {
        let t = io_tensor(&self.model.graph.inputs, "input", "takes", i)?;
        Ok(self.tensor_f32(t))
    }

    /// Runs the model on the inputs written through [`Session::input_mut`], leaving the outputs in the
    /// arena for [`Session::output`] (no copies in or out). Allocates nothing.
    pub fn run_in_place(&mut self) -> Result<()> {
        let n = self.model.graph.nodes.len();
        self.run_inner(None, None, 0..n, None);
        Ok(())
    }

    /// Graph output `i` (row-major f32) as the last [`Session::run_in_place`] or [`Session::run_into`]
    /// left it in the arena: valid until the next run or [`Session::input_mut`].
    pub fn output(&mut self, i: usize) -> Result<&[f32]> {
        let t = io_tensor(&self.model.graph.outputs, "output", "gives", i)?;
        Ok(self.tensor_f32(t))
    }

    /// The arena values of f32 tensor `t` (a graph input or output: validated f32 and in the arena).
    fn tensor_f32(&mut self, t: u32) -> &mut [f32] {
        let bytes = self.tensor_bytes(t);
        // SAFETY: the loader proved the tensor's planned range lies inside the arena, 64-byte aligned;
        // any bytes are a valid f32; the borrow of `self` keeps the arena exclusively ours.
        unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut f32, bytes.len() / 4) }
    }

    /// [`Session::run_into`] that also shows every node output, as computed, to `observe(node index,
    /// output tensor index, values)` (calibration and per-layer error analysis).
    pub fn run_observed(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        observe: Option<Observe>,
    ) -> Result<()> {
        check_io(&self.model.graph, inputs, outputs)?;
        let n = self.model.graph.nodes.len();
        self.run_inner(Some(inputs), Some(outputs), 0..n, observe);
        Ok(())
    }

    /// Runs nodes `nodes` on whatever the arena holds (the GPU backend's fallback for nodes without a GPU
    /// kernel: it writes their inputs with [`Session::tensor_bytes`] first and reads their outputs after).
    #[cfg(feature = "gpu")]
    pub(crate) fn run_nodes(&mut self, nodes: core::ops::Range<usize>) {
        self.run_inner(None, None, nodes, None);
    }

    /// The arena bytes of activation tensor `t` (its planned place).
    pub(crate) fn tensor_bytes(&mut self, t: u32) -> &mut [u8] {
        let model = self.model;
        let tt = &model.graph.tensors[t as usize];
        let len = tt.numel() * tt.dtype.size();
        let off = model.plan.offsets[t as usize] as usize;
        let base = self.arena_base();
        // SAFETY: the loader proved the tensor's planned range lies inside the arena.
        unsafe { core::slice::from_raw_parts_mut(base.add(off), len) }
    }

    fn run_inner(
        &mut self,
        inputs: Option<&[&[f32]]>,
        outputs: Option<&mut [&mut [f32]]>,
        nodes: core::ops::Range<usize>,
        mut observe: Option<Observe>,
    ) {
        let model = self.model;
        let g = &model.graph;
        let base = self.arena_base();
        let offsets = &model.plan.offsets;
        // SAFETY: the loader proved every activation's [offset, offset+bytes) lies inside the arena, is
        // 64-byte aligned, and does not overlap any tensor live at the same step; so a node's input views
        // never alias its output views.
        let tensor =
            |t: u32| -> *mut f32 { unsafe { base.add(offsets[t as usize] as usize) as *mut f32 } };
        for (&t, x) in g.inputs.iter().zip(inputs.unwrap_or(&[])) {
            unsafe { core::slice::from_raw_parts_mut(tensor(t), x.len()) }.copy_from_slice(x);
        }
        #[cfg(feature = "std")]
        let par = Par {
            pool: self.pool.as_ref(),
        };
        #[cfg(not(feature = "std"))]
        let par = Par::single();
        let empty: &[usize] = &[];
        for (ni, (n, prep)) in g
            .nodes
            .iter()
            .zip(&self.prepared)
            .enumerate()
            .take(nodes.end)
            .skip(nodes.start)
        {
            // one slot per input/output (a slot of the other dtype stays empty), pushed rather than
            // initialized MAX_NODE_IO at a time: the loader bounded both counts
            let mut ins = heapless::Vec::<View, MAX_NODE_IO>::new();
            let mut qins = heapless::Vec::<View<i8>, MAX_NODE_IO>::new();
            // int16 views, for the 16-bit engine's nodes only (its constants were copied at preparation)
            let mut hins = heapless::Vec::<View<i16>, MAX_NODE_IO>::new();
            let wide = matches!(prep, Prepared::Q16(_));
            let none = View {
                data: &[],
                shape: empty,
            };
            let qnone = View::<i8> {
                data: &[],
                shape: empty,
            };
            for &t in n.inputs.iter().take(MAX_NODE_IO) {
                let shape = self.shapes[t as usize].as_slice();
                let tt = &g.tensors[t as usize];
                let (f, q) = match (tt.dtype, &self.consts[t as usize]) {
                    // f32 constants, and f16 ones widened at creation
                    (DType::F32 | DType::F16, Some(c)) => (
                        View {
                            data: c.data(),
                            shape,
                        },
                        qnone,
                    ),
                    // SAFETY: see above.
                    (DType::F32, None) => (
                        View {
                            data: unsafe { core::slice::from_raw_parts(tensor(t), tt.numel()) },
                            shape,
                        },
                        qnone,
                    ),
                    // an int8 weight of a float op, widened at creation (or dropped once packed: the
                    // shape stays)
                    (DType::I8, c) if tt.is_const() => (
                        View {
                            data: c.as_ref().map_or(&[], |c| c.data()),
                            shape,
                        },
                        View {
                            data: quant::i8s(model.const_bytes(t as usize)),
                            shape,
                        },
                    ),
                    // SAFETY: see above.
                    (DType::I8, _) => (
                        none,
                        View {
                            data: unsafe {
                                core::slice::from_raw_parts(tensor(t) as *const i8, tt.numel())
                            },
                            shape,
                        },
                    ),
                    // int32 constants (biases) were consumed at preparation
                    _ => (none, qnone),
                };
                // (capacity: take(MAX_NODE_IO) above)
                let _ = (ins.push(f), qins.push(q));
                if wide {
                    let data: &[i16] = if tt.dtype == DType::I16 && !tt.is_const() {
                        // SAFETY: see above (an int16 activation in the arena, 64-byte aligned).
                        unsafe { core::slice::from_raw_parts(tensor(t) as *const i16, tt.numel()) }
                    } else {
                        &[]
                    };
                    let _ = hins.push(View { data, shape });
                }
            }
            let mut outs = heapless::Vec::<ViewMut, MAX_NODE_IO>::new();
            let mut qouts = heapless::Vec::<ViewMut<i8>, MAX_NODE_IO>::new();
            let mut houts = heapless::Vec::<ViewMut<i16>, MAX_NODE_IO>::new();
            for &t in n.outputs.iter().take(MAX_NODE_IO) {
                let shape = self.shapes[t as usize].as_slice();
                let tt = &g.tensors[t as usize];
                let empty_f = || ViewMut {
                    data: &mut [],
                    shape: empty,
                };
                let empty_q = || ViewMut {
                    data: &mut [],
                    shape: empty,
                };
                // SAFETY: see above; outputs of one node are distinct live tensors, hence disjoint.
                let (f, q) = if tt.dtype == DType::I8 {
                    let data = unsafe {
                        core::slice::from_raw_parts_mut(tensor(t) as *mut i8, tt.numel())
                    };
                    (empty_f(), ViewMut { data, shape })
                } else if tt.dtype == DType::I16 {
                    let data = unsafe {
                        core::slice::from_raw_parts_mut(tensor(t) as *mut i16, tt.numel())
                    };
                    let _ = houts.push(ViewMut { data, shape });
                    (empty_f(), empty_q())
                } else {
                    let data = unsafe { core::slice::from_raw_parts_mut(tensor(t), tt.numel()) };
                    (ViewMut { data, shape }, empty_q())
                };
                if wide && tt.dtype != DType::I16 {
                    let _ = houts.push(ViewMut {
                        data: &mut [],
                        shape: empty,
                    });
                }
                let _ = (outs.push(f), qouts.push(q));
            }
            #[cfg(feature = "std")]
            let t0 = self.profile.as_ref().map(|_| std::time::Instant::now());
            match prep {
                Prepared::Quant(qp) => {
                    // SAFETY: the f32 scratch viewed as bytes (same allocation, byte alignment).
                    let bytes = unsafe {
                        core::slice::from_raw_parts_mut(
                            self.scratch.as_mut_ptr() as *mut u8,
                            self.scratch.len() * 4,
                        )
                    };
                    quant::exec(
                        &par,
                        &n.op,
                        qp,
                        &ins[..],
                        &qins[..],
                        &mut outs[..],
                        &mut qouts[..],
                        bytes,
                    )
                }
                Prepared::Q16(qp) => {
                    // SAFETY: the f32 scratch viewed as bytes (same allocation, 4-byte alignment).
                    let bytes = unsafe {
                        core::slice::from_raw_parts_mut(
                            self.scratch.as_mut_ptr() as *mut u8,
                            self.scratch.len() * 4,
                        )
                    };
                    crate::cpu::q16::exec(
                        &par,
                        &n.op,
                        qp,
                        (&ins[..], &qins[..], &hins[..]),
                        &mut outs[..],
                        &mut qouts[..],
                        &mut houts[..],
                        bytes,
                    )
                }
                Prepared::ConvQ(packed, act, s, z) => {
                    let y = core::mem::replace(
                        &mut qouts[0],
                        ViewMut {
                            data: &mut [],
                            shape: empty,
                        },
                    );
                    ops::conv::run_pointwise_q(
                        &self.gemm,
                        &par,
                        *act,
                        packed,
                        ins[0],
                        ops::conv_terms(&ins[..]),
                        (*s, *z),
                        y,
                        &mut self.scratch,
                    )
                }
                _ => ops::exec(
                    &self.gemm,
                    &par,
                    &n.op,
                    prep,
                    &ins[..],
                    &mut outs[..],
                    &mut self.scratch,
                ),
            }
            #[cfg(feature = "std")]
            if let (Some(t0), Some(p)) = (t0, self.profile.as_mut()) {
                p[ni] += t0.elapsed().as_nanos() as u64;
            }
            if let Some(f) = observe.as_mut() {
                for &t in &n.outputs {
                    let len = g.tensors[t as usize].numel();
                    // SAFETY: see above; the node has finished writing its outputs.
                    let v = unsafe {
                        match g.tensors[t as usize].dtype {
                            DType::I8 => {
                                Values::I8(core::slice::from_raw_parts(tensor(t) as *const i8, len))
                            }
                            DType::I16 => Values::I16(core::slice::from_raw_parts(
                                tensor(t) as *const i16,
                                len,
                            )),
                            _ => Values::F32(core::slice::from_raw_parts(tensor(t), len)),
                        }
                    };
                    f(ni, t, v);
                }
            }
        }
        for (&t, y) in g.outputs.iter().zip(outputs.unwrap_or(&mut [])) {
            // SAFETY: see above.
            y.copy_from_slice(unsafe { core::slice::from_raw_parts(tensor(t), y.len()) });
        }
    }

    /// Runs the model on ndarray inputs (any layout) and returns new output arrays.
    #[cfg(feature = "std")]
    pub fn run(
        &mut self,
        inputs: &[ndarray::ArrayViewD<f32>],
    ) -> Result<Vec<ndarray::ArrayD<f32>>> {
        let g = &self.model.graph;
        if inputs.len() != g.inputs.len() {
            bail!(
                Argument,
                "the model takes {} input(s), got {}",
                g.inputs.len(),
                inputs.len()
            );
        }
        let mut owned: Vec<std::borrow::Cow<[f32]>> = Vec::with_capacity(inputs.len());
        for (k, (x, t)) in inputs.iter().zip(self.model.inputs()).enumerate() {
            if x.shape() != t.dims().as_slice() {
                bail!(
                    Argument,
                    "input {k} \"{}\": expected shape {:?}, given {:?}",
                    t.name,
                    t.shape,
                    x.shape()
                );
            }
            owned.push(match x.as_slice() {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(x.iter().copied().collect()),
            });
        }
        let ins: Vec<&[f32]> = owned.iter().map(|c| c.as_ref()).collect();
        let mut outs: Vec<ndarray::ArrayD<f32>> = self
            .model
            .outputs()
            .map(|t| ndarray::ArrayD::zeros(ndarray::IxDyn(&t.dims())))
            .collect();
        {
            let mut views: Vec<&mut [f32]> = Vec::with_capacity(outs.len());
            for o in outs.iter_mut() {
                views.push(
                    o.as_slice_mut()
                        .ok_or_else(|| crate::err!(Argument, "output array is not contiguous"))?,
                );
            }
            self.run_into(&ins, &mut views)?;
        }
        Ok(outs)
    }
}

/// Checks that `inputs` and `outputs` match the graph's inputs and outputs in count and length; the error
/// names the tensor at fault.
/// Tensor of graph input / output `i` (`list`), or an error that says how many the model has.
fn io_tensor(list: &[u32], what: &str, verb: &str, i: usize) -> Result<u32> {
    match list.get(i) {
        Some(&t) => Ok(t),
        None => bail!(
            Argument,
            "{what} {i}: the model {verb} {} {what}(s)",
            list.len()
        ),
    }
}

pub(crate) fn check_io(
    g: &crate::ir::Graph,
    inputs: &[&[f32]],
    outputs: &[&mut [f32]],
) -> Result<()> {
    if inputs.len() != g.inputs.len() || outputs.len() != g.outputs.len() {
        bail!(
            Argument,
            "the model takes {} input(s) and gives {} output(s); got {} and {}",
            g.inputs.len(),
            g.outputs.len(),
            inputs.len(),
            outputs.len()
        );
    }
    for (k, (&t, x)) in g.inputs.iter().zip(inputs).enumerate() {
        let tt = &g.tensors[t as usize];
        if x.len() != tt.numel() {
            bail!(
                Argument,
                "input {k} \"{}\": expected shape {:?} ({} values), given {} values",
                tt.name,
                tt.shape,
                tt.numel(),
                x.len()
            );
        }
    }
    for (k, (&t, y)) in g.outputs.iter().zip(outputs.iter()).enumerate() {
        let tt = &g.tensors[t as usize];
        if y.len() != tt.numel() {
            bail!(
                Argument,
                "output {k} \"{}\": expected shape {:?} ({} values), buffer has {}",
                tt.name,
                tt.shape,
                tt.numel(),
                y.len()
            );
        }
    }
    Ok(())
}
