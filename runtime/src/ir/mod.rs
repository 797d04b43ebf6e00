//! The intermediate representation shared by the tool (which produces it) and the runtime (which validates
//! and runs it): a graph of tensors and nodes in execution order, with static shapes.
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

pub mod quant;
pub mod shape;

pub use quant::QParams;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// Signed 8-bit integer (quantized).
    I8,
    /// Unsigned 8-bit integer (quantized).
    U8,
    /// Signed 32-bit integer (quantized bias, indices).
    I32,
    /// Signed 16-bit integer (format 10: a 16-bit activation, symmetric per tensor; a 16-bit table).
    I16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::I16 => 2,
            DType::I8 | DType::U8 => 1,
        }
    }
}

/// A byte range inside the artifact's weight blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRange {
    /// Offset from the start of the weight blob; a multiple of 64.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A tensor of the graph: a graph input, an intermediate activation, a graph output, or a constant whose
/// bytes live in the weight blob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// The name from the source model (used in errors and for the CLI's output files).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub shape: Vec<u32>,
    /// For constants: where the little-endian bytes are in the weight blob. `None` for activations.
    pub data: Option<BlobRange>,
    /// Quantization parameters of an integer tensor.
    pub quant: Option<QParams>,
}

impl Tensor {
    /// The shape as `usize` dims.
    pub fn dims(&self) -> Vec<usize> {
        self.shape.iter().map(|&d| d as usize).collect()
    }
    /// Number of elements (saturating; the loader rejects tensors whose byte size overflows).
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d as usize))
    }
    /// Size in bytes (saturating).
    pub fn byte_len(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size())
    }
    /// Whether the tensor is a constant (weights).
    pub fn is_const(&self) -> bool {
        self.data.is_some()
    }
}

/// One operation in execution order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Name from the source model (or made up by a pass), used in errors and logs.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Tensor indices it reads.
    pub inputs: Vec<u32>,
    /// Tensor indices it writes.
    pub outputs: Vec<u32>,
}

/// The whole model graph. Nodes are stored in execution order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// All tensors; nodes refer to them by index.
    pub tensors: Vec<Tensor>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Graph inputs (tensor indices), in the source model's order.
    pub inputs: Vec<u32>,
    /// Graph outputs (tensor indices), in the source model's order.
    pub outputs: Vec<u32>,
}

/// An element-wise function of one value. Any of them can also be fused into the producer's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Unary {
    /// max(x, 0)
    Relu,
    /// min(max(x, lo), hi)
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// max(0, min(1, alpha·x + beta))
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// x · max(0, min(1, x/6 + 1/2))
    HardSwish,
    /// x if x ≥ 0 else alpha·x
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// Gauss error function.
    Erf,
    /// Square root.
    Sqrt,
    /// e^x
    Exp,
    /// Natural logarithm.
    Log,
    /// Hyperbolic tangent.
    Tanh,
    /// |x|
    Abs,
    /// -x
    Neg,
    /// 1/x
    Reciprocal,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// x · sigmoid(x) (SiLU, swish with β = 1: YOLOv5/v8/X's activation), the Sigmoid rule's value
    /// times x. Format version 5.
    Silu,
}

/// `a·b + c` rounded once (fused) where std provides it: every f32 convolution and GEMM path accumulates
/// this way, in the same order, so the scalar, AVX2 and NEON kernels give the same bits and an int8
/// artifact's float layers (its input stage, its head) quantize identically on every path. Without std
/// (firmware builds) it is `a·b + c`, rounded twice: core has no fused multiply-add.
#[inline(always)]
pub fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(feature = "std"))]
    {
        a * b + c
    }
}

/// The input clamp of [`exp_rule`]: at the bottom, just below ln 2^−150, the result rounds to 0 (so a
/// softmax's −inf logit gets exactly 0); at the top it overflows to +inf.
pub const EXP_CLAMP: (f32, f32) = (-104.0, 88.72284);
/// ln 2 in two parts (the first exact in few bits), so `x − n·ln 2` is exact.
pub const EXP_LN2: (f32, f32) = (0.693_359_4, -2.121_944_4e-4);
/// The e^r polynomial's coefficients, degree 6 down to 2 (Cephes' single precision): one table for the
/// scalar rule and the vector kernels, so they stay the same function.
pub const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` as Exp, the logistic sigmoid, tanh and softmax compute it: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2
/// split in two parts so r is exact), a degree-6 polynomial for e^r (Cephes' single-precision
/// coefficients) and 2^n through the exponent bits (in two factors, so results below 2^−126 come out
/// subnormal and below 2^−150 zero); within 2 ulp of the correctly rounded result for x in [−87.3, 88.7],
/// 0 from [`EXP_CLAMP`]'s bottom down and +inf above its top. The same operations, fused where they are
/// fused, as the x86 kernels (`cpu::kernels::x86::exp8`, `exp16`), so every path of a build gives the
/// same bits (a `no_std` build rounds the multiply-adds twice: its own bits, equal across its paths).
pub fn exp_rule(x: f32) -> f32 {
    let x = x.clamp(EXP_CLAMP.0, EXP_CLAMP.1);
    // round half to even, as the vector kernel's rounding mode does
    let n = libm::rintf(x * core::f32::consts::LOG2_E);
    let r = fmadd(-n, EXP_LN2.0, x);
    let r = fmadd(-n, EXP_LN2.1, r);
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = fmadd(p, r, c);
    }
    let e = fmadd(p, r * r, r) + 1.0;
    // 2^n in two factors (n ∈ [−150, 128]: 2^128 overflows to +inf as it should, 2^−150 to 0)
    let ni = n as i32;
    let half = ni >> 1;
    let pow = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    e * pow(half) * pow(ni - half)
}

/// Below this |x| tanh is the odd polynomial, from it on `1 − 2/(e^{2|x|} + 1)` (Cephes' `tanhf` split).
pub const TANH_SMALL: f32 = 0.625;
/// tanh's odd polynomial in z = x², degree 4 down to 0 (Cephes' single-precision coefficients):
/// `tanh x ≈ x + x·z·P(z)` for |x| < [`TANH_SMALL`]. One table for the scalar rule and the vector kernels.
pub const TANH_POLY: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// tanh as every path computes it: the odd polynomial below [`TANH_SMALL`] (relative error near 0 stays
/// small), `1 − 2/(e^{2|x|} + 1)` with x's sign above (e^ by the sigmoid's rule, so the saturation to ±1
/// comes for free); NaN stays NaN, ±0 stays ±0. Within 2 ulp of the correctly rounded tanh. The same operations as the
/// vector kernels (`cpu::kernels::x86::tanh_avx2`, `tanh512`): an LSTM takes two tanh per unit and step, and libm's
/// scalar `tanhf` was 6% of an LSTM recognizer's run.
fn tanh_rule(x: f32) -> f32 {
    // NaN stays NaN, and ±0 keeps its sign (the polynomial's x + x·z·P(z) would give +0 for −0)
    if x.is_nan() || x == 0.0 {
        return x;
    }
    let a = x.abs();
    if a < TANH_SMALL {
        let z = x * x;
        let mut p = TANH_POLY[0];
        for &c in &TANH_POLY[1..] {
            p = fmadd(p, z, c);
        }
        fmadd(p * z, x, x)
    } else {
        let t = 1.0 - 2.0 / (exp_rule(a + a) + 1.0);
        if x < 0.0 {
            -t
        } else {
            t
        }
    }
}

impl Unary {
    /// Applies the function to one value (the scalar reference for every backend).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Relu => x.max(0.0),
            Unary::Clip { min, max } => x.max(min).min(max),
            Unary::Sigmoid if x.is_nan() => x,
            Unary::Sigmoid => 1.0 / (1.0 + exp_rule(-x)),
            Unary::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Unary::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Unary::Erf => libm::erff(x),
            Unary::Sqrt => libm::sqrtf(x),
            Unary::Exp => exp_rule(x),
            Unary::Log => libm::logf(x),
            Unary::Tanh => tanh_rule(x),
            Unary::Abs => libm::fabsf(x),
            Unary::Neg => -x,
            Unary::Reciprocal => 1.0 / x,
            Unary::Floor => libm::floorf(x),
            Unary::Ceil => libm::ceilf(x),
            Unary::Silu => x * Unary::Sigmoid.apply(x),
        }
    }
}

/// A two-operand element-wise operation with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// a ^ b
    Pow,
    /// max(a, b)
    Max,
    /// min(a, b)
    Min,
}

impl BinOp {
    /// Applies the operation (the scalar reference).
    #[inline]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            // x² as the product (correctly rounded, as powf's result should be): the kernels' fast path
            BinOp::Pow if b == 2.0 => a * a,
            BinOp::Pow => libm::powf(a, b),
            BinOp::Max => a.max(b),
            BinOp::Min => a.min(b),
        }
    }
}

/// Geometry of a 2-D convolution over NCHW data (also used by ConvTranspose).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2d {
    /// Kernel height and width.
    pub kernel: [u32; 2],
    /// Strides (h, w).
    pub strides: [u32; 2],
    /// Dilations (h, w).
    pub dilations: [u32; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [u32; 4],
    /// Channel groups (groups == channels is depthwise).
    pub groups: u32,
    /// ConvTranspose only: extra output rows/cols at the bottom/right.
    pub output_padding: [u32; 2],
}

impl Conv2d {
    /// A 1×1 convolution at stride 1 without padding over `groups` groups (a pointwise conv, or with
    /// groups = channels a per-channel scale).
    pub fn pointwise(groups: u32) -> Conv2d {
        Conv2d {
            kernel: [1, 1],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            groups,
            output_padding: [0, 0],
        }
    }

    /// A `k`×`k` convolution at stride 1, one group, padded by `k / 2` on every side (for odd `k` the
    /// output keeps the input's size).
    pub fn same(k: u32) -> Conv2d {
        Conv2d {
            kernel: [k, k],
            pads: [k / 2; 4],
            ..Conv2d::pointwise(1)
        }
    }
}

/// Kind of a pooling window reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Average over the window.
    Avg {
        /// Whether padded cells count in the divisor.
        count_include_pad: bool,
    },
}

/// A 2-D pooling window over NCHW data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2d {
    /// Reduction.
    pub kind: PoolKind,
    /// Window height and width.
    pub kernel: [u32; 2],
    /// Strides (h, w).
    pub strides: [u32; 2],
    /// Dilations (h, w).
    pub dilations: [u32; 2],
    /// Padding: top, left, bottom, right. `ceil_mode` is already folded into bottom/right at import.
    pub pads: [u32; 4],
    /// The part of the bottom/right padding that only `ceil_mode` added (never counted by averages).
    pub ceil_extra: [u32; 2],
}

/// How an output coordinate maps back to an input coordinate in [`Op::Resize`] (ONNX's
/// `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordMode {
    /// (x + 0.5) / scale - 0.5
    HalfPixel,
    /// Like half_pixel but 0 when the output length is 1.
    PytorchHalfPixel,
    /// x / scale
    Asymmetric,
    /// x · (in - 1) / (out - 1)
    AlignCorners,
    /// (x + 0.5) / scale (the old TensorFlow nearest rule)
    TfHalfPixelForNearest,
}

/// Interpolation of [`Op::Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// Nearest neighbour with ONNX's `nearest_mode`.
    Nearest(NearestMode),
    /// Bilinear over the last two axes.
    Linear,
}

/// ONNX's `nearest_mode`: how a fractional source coordinate becomes an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NearestMode {
    /// Round, halves down.
    RoundPreferFloor,
    /// Round, halves up.
    RoundPreferCeil,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
}

/// Padding mode of [`Op::Pad`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum PadMode {
    /// Fill with a constant.
    Constant(f32),
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge.
    Edge,
}

/// A reduction of [`Op::Reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceOp {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// Which way a recurrent op ([`Op::Lstm`], [`Op::Gru`], [`Op::Rnn`]) reads its sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// First step to last.
    Forward,
    /// Last step to first.
    Reverse,
    /// Both, as two directions: forward first, then reverse.
    Bidirectional,
}

impl Direction {
    /// The number of directions (the `D` axis of the op's weights and outputs).
    pub fn count(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// The closed set of operations. Shapes are static; every op's output shape follows from its inputs by
/// [`shape::infer`], which the loader re-runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// 2-D convolution, NCHW. Inputs: x `[N,C,H,W]`, weight `[M, C/groups, kh, kw]` (constant), optional
    /// bias `[M]` (constant). `act` is applied to the output (fused). Format 6 adds two optional inputs
    /// after the bias (then required): a per-output-channel scale and shift `[M]` (constants) applied
    /// after `act`, `y·scale + shift` in two roundings, as a ChannelAffine node would (PP-LCNetV3's
    /// learnable affine after a hard-swish, fused so the map is not read and written once more).
    Conv {
        /// Geometry.
        geom: Conv2d,
        /// Fused activation.
        act: Option<Unary>,
    },
    /// 2-D transposed convolution, NCHW. Inputs: x, weight `[C, M/groups, kh, kw]` (constant), optional bias.
    ConvTranspose {
        /// Geometry.
        geom: Conv2d,
        /// Fused activation.
        act: Option<Unary>,
    },
    /// numpy `matmul` (batch dims broadcast), then an optional bias added along the last axis, then `act`.
    MatMul {
        /// Fused activation.
        act: Option<Unary>,
    },
    /// Element-wise binary op with numpy broadcasting, then `act`.
    Binary {
        /// The operation.
        op: BinOp,
        /// Fused activation.
        act: Option<Unary>,
    },
    /// Element-wise unary function.
    Unary(Unary),
    /// Per-channel `x·scale[c] + shift[c]` along axis 1 (inference BatchNormalization).
    /// Inputs: x, scale `[C]`, shift `[C]` (constants).
    ChannelAffine {
        /// Fused activation.
        act: Option<Unary>,
    },
    /// 2-D pooling.
    Pool(Pool2d),
    /// Pool over all spatial positions (axes 2..), keeping them as size 1.
    GlobalPool(PoolKind),
    /// Resize the last axes (nearest on any axes, linear on the last two).
    Resize {
        /// Interpolation.
        mode: ResizeMode,
        /// Coordinate transformation.
        coord: CoordMode,
        /// Scale per axis (output / input, as ONNX defines it when scales are given).
        scales: Vec<f32>,
    },
    /// Join along `axis`.
    Concat {
        /// Axis.
        axis: u32,
    },
    /// Cut along `axis` into the outputs' sizes.
    Split {
        /// Axis.
        axis: u32,
    },
    /// Strided slice with one (start, step) per axis; the output shape gives the counts.
    Slice {
        /// Start index per axis (already clamped into range).
        starts: Vec<i64>,
        /// Step per axis (non-zero).
        steps: Vec<i64>,
    },
    /// Pad (positive) or crop (negative) each axis: `pads` is all begins then all ends.
    Pad {
        /// Begins then ends, one per axis each.
        pads: Vec<i64>,
        /// Fill mode.
        mode: PadMode,
    },
    /// Same data, new shape (Reshape/Flatten/Squeeze/Unsqueeze).
    Reshape,
    /// Axis permutation.
    Transpose {
        /// Output axis i is input axis perm\[i\].
        perm: Vec<u32>,
    },
    /// Softmax along `axis`.
    Softmax {
        /// Axis.
        axis: u32,
    },
    /// Reduce over `axes`; the output keeps them as size 1 when `keepdims`.
    Reduce {
        /// Reduction.
        op: ReduceOp,
        /// Sorted, unique axes.
        axes: Vec<u32>,
        /// Whether reduced axes stay as size 1.
        keepdims: bool,
    },
    /// f32 → int8 with the output tensor's per-tensor parameters: `q = clamp(round_half_even(x / s) + zp)`
    /// (ONNX QuantizeLinear).
    Quantize,
    /// int8 → f32 with the input tensor's per-tensor parameters: `x = s · (q − zp)`.
    Dequantize,
    /// Integer convolution. Inputs: x (int8, per tensor), weight `[M, C/groups, kh, kw]` (int8 constant,
    /// symmetric, per output channel on axis 0), optional bias `[M]` (int32 constant at scale `s_x·s_w[m]`).
    /// The output (int8, per tensor) is requantized by the fixed-point multiplier `s_x·s_w[m] / s_y` and
    /// clamped to `[lo, hi]` (a fused Relu/Clip in the output's integers).
    QConv {
        /// Geometry.
        geom: Conv2d,
        /// Lowest output integer.
        lo: i8,
        /// Highest output integer.
        hi: i8,
    },
    /// Integer `x · W + bias`: x `[.., K]` int8, W `[K, N]` int8 constant (symmetric, per tensor or per
    /// column on axis 1), optional bias `[N]` int32 at scale s_x·s_w; requantized and clamped like QConv.
    QMatMul {
        /// Lowest output integer.
        lo: i8,
        /// Highest output integer.
        hi: i8,
    },
    /// Integer Add, Sub or Mul with numpy broadcasting: both inputs are rescaled to the output's scale
    /// with fixed-point multipliers; clamped to `[lo, hi]`.
    QBinary {
        /// Add, Sub or Mul.
        op: BinOp,
        /// Lowest output integer.
        lo: i8,
        /// Highest output integer.
        hi: i8,
    },
    /// Element-wise function by lookup: inputs x (int8) and a 256-entry int8 table (constant) indexed by
    /// `x + 128`.
    QLut,
    /// Integer transposed convolution whose kernel equals its stride (no padding, dilation 1, one group):
    /// every output pixel takes exactly one tap, so it is requantized like [`Op::QConv`]. Inputs: x (int8),
    /// weight `[C, M, kh, kw]` (int8, symmetric per output channel on axis 1), optional bias `[M]` (int32).
    QConvTranspose {
        /// Window geometry (kernel = strides).
        geom: Conv2d,
        /// Lowest output integer.
        lo: i8,
        /// Highest output integer.
        hi: i8,
    },
    /// Long short-term memory over a sequence (ONNX LSTM, layout 0, activations sigmoid / tanh / tanh,
    /// gate order i, o, f, c). Inputs: X `[S, B, I]`, W `[D, 4H, I]`, R `[D, 4H, H]`, bias `[D, 8H]`
    /// (W's then R's; constants), initial h and c `[D, B, H]`, and with `peepholes` P `[D, 3H]`
    /// (constant). Outputs: Y `[S, D, B, H]` (every step's h), the last h and the last c `[D, B, H]`.
    /// `D` is 2 for [`Direction::Bidirectional`] (forward then reverse), else 1. Format 7.
    Lstm {
        /// Hidden size H.
        hidden: u32,
        /// Which way the sequence is read.
        direction: Direction,
        /// Gate pre-activations are clamped to `[-clip, clip]` when set.
        clip: Option<f32>,
        /// Whether input 6 holds the peephole weights.
        peepholes: bool,
    },
    /// Gated recurrent unit over a sequence (ONNX GRU, layout 0, activations sigmoid / tanh, gate order
    /// z, r, h). Inputs: X `[S, B, I]`, W `[D, 3H, I]`, R `[D, 3H, H]`, bias `[D, 6H]` (W's then R's;
    /// constants), initial h `[D, B, H]`. Outputs: Y `[S, D, B, H]` (every step's h) and the last h
    /// `[D, B, H]`. Format 8.
    Gru {
        /// Hidden size H.
        hidden: u32,
        /// Which way the sequence is read.
        direction: Direction,
        /// Gate pre-activations are clamped to `[-clip, clip]` when set.
        clip: Option<f32>,
        /// ONNX's `linear_before_reset`: the reset gate scales `R_h·h + Rb_h` (PyTorch's GRU) instead
        /// of h before `R_h`.
        linear_before_reset: bool,
    },
    /// A plain recurrent layer over a sequence (ONNX RNN, layout 0, activation tanh):
    /// `h = tanh(W·x + R·h + Wb + Rb)`. Inputs: X `[S, B, I]`, W `[D, H, I]`, R `[D, H, H]`, bias
    /// `[D, 2H]` (constants), initial h `[D, B, H]`. Outputs: Y `[S, D, B, H]` and the last h
    /// `[D, B, H]`. Format 8.
    Rnn {
        /// Hidden size H.
        hidden: u32,
        /// Which way the sequence is read.
        direction: Direction,
        /// Pre-activations are clamped to `[-clip, clip]` when set.
        clip: Option<f32>,
    },
    /// Integer convolution on 16-bit activations (format 10): x int16 symmetric per tensor (zero point
    /// 0), weight `[M, C/groups, kh, kw]` int8 symmetric per output channel, optional bias `[M]` int32 at
    /// scale `s_x·s_w[m]`; `acc = Σ w·x` in i32 (the loader proves every row's `2^15·Σ|w| + |bias|` below
    /// 2^31, so no order of summation can overflow), the output int16 symmetric per tensor
    /// `clamp(m_c.apply(acc + bias_c), lo, hi)`. A fourth input (the bias then required) is a
    /// [`Op::Q16Lut`] table applied to that (an element-wise function fused into the conv's epilogue):
    /// the table's own parameters then hold the scale of the codes it reads, which the multipliers
    /// `s_x·s_w[m] / s_table` target (the output's scale is the function's).
    Q16Conv {
        /// Geometry.
        geom: Conv2d,
        /// Lowest output integer.
        lo: i16,
        /// Highest output integer.
        hi: i16,
    },
    /// Integer `x · W + bias` on 16-bit activations (format 10): x `[.., K]` int16, W `[K, N]` int8
    /// (symmetric, per tensor or per column), optional bias `[N]` int32; accumulated and requantized as
    /// [`Op::Q16Conv`].
    Q16MatMul {
        /// Lowest output integer.
        lo: i16,
        /// Highest output integer.
        hi: i16,
    },
    /// Integer Add, Sub or Mul on 16-bit activations with numpy broadcasting (format 10): Add/Sub as
    /// `round((a·A ± b·B) / 2^S)` with the integer multipliers of [`quant::add16_params`], Mul as the
    /// fixed-point multiplier `s_a·s_b / s_y` applied to `a·b`; clamped to `[lo, hi]`.
    Q16Binary {
        /// Add, Sub or Mul.
        op: BinOp,
        /// Lowest output integer.
        lo: i16,
        /// Highest output integer.
        hi: i16,
    },
    /// Element-wise function on 16-bit activations by an interpolated table (format 10): inputs x (int16)
    /// and an int16 table (constant) of the function at every `2^shift`-th input, `shift` 4 to 8 given
    /// by its length ([`quant::lut16_len`]: 257 to 4097 entries), read as [`quant::lut16`] (exact
    /// integers). Stored as its first entry, then each entry minus the one before (wrapping int16): a
    /// smooth function's differences are small and a piecewise-linear one's repeat, so the artifact's
    /// deflate keeps a table in a fraction of its bytes.
    Q16Lut,
    /// An integer tensor rescaled to another's parameters and width (format 11), where int8 and int16
    /// layers meet: x and y each int8 (one scale, a zero point) or int16 (one scale, zero point 0),
    /// `y = clamp(z_y + m.apply(x − z_x))` with the fixed-point multiplier `m = s_x / s_y`, clamped to
    /// y's type.
    Requantize,
    /// An element-wise function on 16-bit activations computed in f32 (format 12): x and y int16 (one
    /// scale each, zero point 0), `y = rint(clamp(f(f32(x)·s_x)·k))` by
    /// [`quant::unary16`], every step one IEEE single-precision operation, so every path gives the same
    /// integers. Only functions built from such steps: `HardSwish` (a few vector instructions per 8
    /// values where an interpolated table takes a gather).
    Q16Unary(Unary),
    /// A 16-bit convolution with an element-wise function applied in its epilogue, in f32 (format 12):
    /// inputs as [`Op::Q16Conv`] (x, weight, optional bias); the sums' real values
    /// `v = f32(acc + bias_c)·f32(s_x·s_w[c])`, then `y = clamp(rint(f(v)·k), lo, hi)` with `f` and `k`
    /// as [`Op::Q16Unary`]'s ([`quant::unary16`]; HardSwish only), each step one IEEE single-precision
    /// operation. The conv's own output is never rounded to int16 (the tool fuses a Q16Unary into the
    /// Q16Conv that alone feeds it).
    Q16ConvAct {
        /// Geometry.
        geom: Conv2d,
        /// The function.
        act: Unary,
        /// Lowest output integer.
        lo: i16,
        /// Highest output integer.
        hi: i16,
    },
}

impl Op {
    /// A short name for logs, histograms and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { geom, .. } if geom.groups > 1 => "ConvGrouped",
            Op::Conv { .. } => "Conv",
            Op::ConvTranspose { .. } => "ConvTranspose",
            Op::MatMul { .. } => "MatMul",
            Op::Binary { op, .. } => match op {
                BinOp::Add => "Add",
                BinOp::Sub => "Sub",
                BinOp::Mul => "Mul",
                BinOp::Div => "Div",
                BinOp::Pow => "Pow",
                BinOp::Max => "Max",
                BinOp::Min => "Min",
            },
            Op::Unary(u) => match u {
                Unary::Relu => "Relu",
                Unary::Clip { .. } => "Clip",
                Unary::Sigmoid => "Sigmoid",
                Unary::HardSigmoid { .. } => "HardSigmoid",
                Unary::HardSwish => "HardSwish",
                Unary::LeakyRelu { .. } => "LeakyRelu",
                Unary::Erf => "Erf",
                Unary::Sqrt => "Sqrt",
                Unary::Exp => "Exp",
                Unary::Log => "Log",
                Unary::Tanh => "Tanh",
                Unary::Abs => "Abs",
                Unary::Neg => "Neg",
                Unary::Reciprocal => "Reciprocal",
                Unary::Floor => "Floor",
                Unary::Ceil => "Ceil",
                Unary::Silu => "Silu",
            },
            Op::ChannelAffine { .. } => "ChannelAffine",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Avg { .. } => "AveragePool",
            },
            Op::GlobalPool(PoolKind::Max) => "GlobalMaxPool",
            Op::GlobalPool(_) => "GlobalAveragePool",
            Op::Resize { .. } => "Resize",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Pad { .. } => "Pad",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Softmax { .. } => "Softmax",
            Op::Reduce { .. } => "Reduce",
            Op::Quantize => "Quantize",
            Op::Dequantize => "Dequantize",
            Op::QConv { geom, .. } if geom.groups > 1 => "QConvGrouped",
            Op::QConv { .. } => "QConv",
            Op::QMatMul { .. } => "QMatMul",
            Op::QBinary { op, .. } => match op {
                BinOp::Add => "QAdd",
                BinOp::Sub => "QSub",
                BinOp::Mul => "QMul",
                _ => "QBinary",
            },
            Op::QLut => "QLut",
            Op::QConvTranspose { .. } => "QConvTranspose",
            Op::Q16Conv { geom, .. } if geom.groups > 1 => "Q16ConvGrouped",
            Op::Q16Conv { .. } => "Q16Conv",
            Op::Q16MatMul { .. } => "Q16MatMul",
            Op::Q16Binary { op, .. } => match op {
                BinOp::Add => "Q16Add",
                BinOp::Sub => "Q16Sub",
                BinOp::Mul => "Q16Mul",
                _ => "Q16Binary",
            },
            Op::Q16Lut => "Q16Lut",
            Op::Requantize => "Requantize",
            Op::Q16Unary(_) => "Q16Unary",
            Op::Q16ConvAct { geom, .. } if geom.groups > 1 => "Q16ConvActGrouped",
            Op::Q16ConvAct { .. } => "Q16ConvAct",
            Op::Lstm { .. } => "LSTM",
            Op::Gru { .. } => "GRU",
            Op::Rnn { .. } => "RNN",
        }
    }

    /// The fused activation slot of ops that have one.
    pub fn act_mut(&mut self) -> Option<&mut Option<Unary>> {
        match self {
            Op::Conv { act, .. }
            | Op::ConvTranspose { act, .. }
            | Op::MatMul { act }
            | Op::Binary { act, .. }
            | Op::ChannelAffine { act } => Some(act),
            _ => None,
        }
    }
}

impl Graph {
    /// Multiply-accumulate count of one run (Conv, ConvTranspose, MatMul), for reports.
    pub fn macs(&self) -> u64 {
        (0..self.nodes.len())
            .map(|i| self.node_macs(i))
            .fold(0u64, |a, b| a.saturating_add(b))
    }

    /// Multiply-accumulates of node `i` (0 for ops without a product).
    pub fn node_macs(&self, i: usize) -> u64 {
        let Some(n) = self.nodes.get(i) else { return 0 };
        let t = |i: usize| n.inputs.get(i).and_then(|&t| self.tensors.get(t as usize));
        let out = n
            .outputs
            .first()
            .and_then(|&t| self.tensors.get(t as usize));
        let (Some(x), Some(w), Some(y)) = (t(0), t(1), out) else {
            return 0;
        };
        match &n.op {
            // every output element takes (C/groups)·kh·kw MACs = weight numel / M
            Op::Conv { .. } | Op::QConv { .. } | Op::Q16Conv { .. } | Op::Q16ConvAct { .. } => {
                y.numel() as u64
                    * (w.numel() as u64 / w.shape.first().copied().unwrap_or(1).max(1) as u64)
            }
            Op::ConvTranspose { .. } | Op::QConvTranspose { .. } => {
                x.numel() as u64
                    * (w.numel() as u64 / w.shape.first().copied().unwrap_or(1).max(1) as u64)
            }
            Op::MatMul { .. } | Op::QMatMul { .. } | Op::Q16MatMul { .. } => {
                y.numel() as u64 * x.shape.last().copied().unwrap_or(1) as u64
            }
            // every step, direction and batch row: 4H gates over I inputs and H recurrent values
            Op::Lstm { hidden, .. } => {
                y.numel() as u64
                    * 4
                    * (x.shape.last().copied().unwrap_or(0) as u64 + *hidden as u64)
            }
            Op::Gru { hidden, .. } | Op::Rnn { hidden, .. } => {
                let gates = if matches!(n.op, Op::Gru { .. }) { 3 } else { 1 };
                y.numel() as u64
                    * gates
                    * (x.shape.last().copied().unwrap_or(0) as u64 + *hidden as u64)
            }
            _ => 0,
        }
    }

    /// Number of constant parameters (elements of constant tensors).
    pub fn param_count(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.is_const())
            .map(|t| t.numel() as u64)
            .sum()
    }

    /// Bytes of constant data.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.is_const())
            .map(|t| t.byte_len() as u64)
            .sum()
    }

    /// Op histogram: (op name, count), sorted by name.
    pub fn op_histogram(&self) -> Vec<(&'static str, usize)> {
        let mut h: Vec<(&'static str, usize)> = Vec::new();
        for n in &self.nodes {
            match h.iter_mut().find(|(k, _)| *k == n.op.name()) {
                Some(e) => e.1 += 1,
                None => h.push((n.op.name(), 1)),
            }
        }
        h.sort();
        h
    }
}
