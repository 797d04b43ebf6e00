//! CPU capability detection, done once per session. `TERN_CPU=scalar` (env, std builds) forces the
//! portable reference path so every path can be tested and compared on one machine.
/// The instruction-set path the f32 kernels take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust: the reference oracle.
    Scalar,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Isa {
    /// Name for logs and bench output.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
        }
    }
}

/// The best path this CPU supports.
pub fn best() -> Isa {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return Isa::Neon;
    }
    #[allow(unreachable_code)]
    Isa::Scalar
}

/// [`best`], lowered by the `TERN_CPU` environment variable (`scalar`) where std is available.
pub fn detect() -> Isa {
    #[cfg(feature = "std")]
    {
        if let Ok(v) = std::env::var("TERN_CPU") {
            if v.eq_ignore_ascii_case("scalar") {
                return Isa::Scalar;
            }
        }
    }
    best()
}
