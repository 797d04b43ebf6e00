//! CPU capability detection, done once per session. `TERN_CPU=scalar` (env, std builds) forces the
//! portable reference path so every path can be tested and compared on one machine.
/// The instruction-set path the kernels take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust: the reference oracle.
    Scalar,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX2, FMA and u8×i8 dot products (`vpdpbusd` for int8; f32 as AVX2): AVX-VNNI, or
    /// AVX512-VNNI with VL on CPUs without AVX-VNNI (its EVEX form on 256-bit registers).
    AvxVnni,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 Advanced SIMD with the dot-product extension (SDOT; Pi 5, Jetson Orin).
    Dotprod,
}

impl Isa {
    /// Name for logs and bench output.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Neon => "neon",
            Isa::Dotprod => "dotprod",
        }
    }
}

/// The best path this CPU supports.
pub fn best() -> Isa {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // u8×i8 dot products: AVX-VNNI, or AVX512-VNNI's 256-bit form (CPUs with only the latter)
            if std::is_x86_feature_detected!("avxvnni") || super::kernels::x86::has_avx512vnni() {
                return Isa::AvxVnni;
            }
            return Isa::Avx2;
        }
    }
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    {
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return Isa::Dotprod;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return Isa::Neon;
    }
    #[allow(unreachable_code)]
    Isa::Scalar
}

/// Every path this CPU can run, lowest first (tests compare each against the scalar oracle).
pub fn available() -> alloc::vec::Vec<Isa> {
    let mut v = alloc::vec![Isa::Scalar];
    match best() {
        Isa::Scalar => {}
        Isa::Dotprod => v.extend([Isa::Neon, Isa::Dotprod]),
        Isa::AvxVnni => v.extend([Isa::Avx2, Isa::AvxVnni]),
        other => v.push(other),
    }
    v
}

/// [`best`], lowered by the `TERN_CPU` environment variable where std is available: `scalar` everywhere,
/// `neon` on a dotprod CPU (the Pi 4 path on a Pi 5), `avx2` on an AVX-VNNI CPU.
pub fn detect() -> Isa {
    let best = best();
    #[cfg(feature = "std")]
    {
        if let Ok(v) = std::env::var("TERN_CPU") {
            if v.eq_ignore_ascii_case("scalar") {
                return Isa::Scalar;
            }
            if v.eq_ignore_ascii_case("neon") && best == Isa::Dotprod {
                return Isa::Neon;
            }
            if v.eq_ignore_ascii_case("avx2") && best == Isa::AvxVnni {
                return Isa::Avx2;
            }
        }
    }
    best
}
