//! Calibration: a streaming observer per tensor (exact min/max plus a fixed-size histogram, so memory does
//! not grow with the number of samples) and the methods that turn it into an activation range.
//!
//! The histogram covers `[-R, R)` with [`BINS`] bins, `R` a power of two. When a value falls outside, `R`
//! doubles and adjacent bins merge pairwise — exact, because the bin edges of the wider grid are edges of
//! the narrower one. So observing the samples in any chunking gives the same histogram.
use tern::ir::quant::QParams;

/// Histogram bins.
pub const BINS: usize = 2048;

/// How an observed distribution becomes a `[lo, hi]` range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The observed minimum and maximum.
    MinMax,
    /// The central `p` percent of the mass (e.g. 99.99).
    Percentile(f64),
    /// The range (a shrink of min/max) minimizing the expected int8 quantization error.
    Mse,
    /// The clip threshold minimizing the KL divergence between the clipped and quantized distributions
    /// (the TensorRT method).
    Entropy,
    /// Per model: whichever of [`AUTO_CANDIDATES`] brings the int8 outputs closest to float on the
    /// calibration samples (resolved before quantizing; as a range rule it is percentile).
    Auto,
}

/// The methods [`Method::Auto`] chooses from (entropy is left out: it collapses on sigmoid maps).
pub const AUTO_CANDIDATES: [Method; 3] = [Method::Percentile(99.99), Method::MinMax, Method::Mse];

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile(99.99)),
            "mse" => Ok(Method::Mse),
            "entropy" => Ok(Method::Entropy),
            "auto" => Ok(Method::Auto),
            o => Err(format!(
                "unknown calibration method \"{o}\" (auto, minmax, percentile, mse, entropy)"
            )),
        }
    }
}

/// Streaming statistics of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Observer {
    min: f32,
    max: f32,
    range: f32,
    hist: Vec<u64>,
    count: u64,
    /// Per-channel statistics (axis 1) of a tensor that may be stored channel-scaled (empty otherwise).
    pub channels: Vec<Observer>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            range: 0.0,
            hist: vec![0; BINS],
            count: 0,
            channels: Vec::new(),
        }
    }
}

/// Histogram bins of a per-channel observer: enough to place a 99.99% percentile within 1/128 of the
/// channel's range, at 2 KB a channel (the per-tensor observers keep [`BINS`]).
pub const CHANNEL_BINS: usize = 256;

impl Observer {
    /// An observer with `bins` histogram bins (a multiple of 4).
    pub fn with_bins(bins: usize) -> Observer {
        Observer {
            hist: vec![0; bins.max(4) / 4 * 4],
            ..Observer::default()
        }
    }

    /// Adds the values of an NCHW-like tensor (`c` channels on axis 1, `npix` values per channel plane) to
    /// the tensor's and each channel's statistics.
    pub fn observe_channels(&mut self, xs: &[f32], c: usize, npix: usize) {
        self.observe(xs);
        if c == 0 || npix == 0 || !xs.len().is_multiple_of(c * npix) {
            return;
        }
        if self.channels.len() != c {
            self.channels = vec![Observer::with_bins(CHANNEL_BINS); c];
        }
        // planes of (item, channel) in order: channel = plane % c
        for (p, plane) in xs.chunks_exact(npix).enumerate() {
            self.channels[p % c].observe(plane);
        }
    }

    /// Adds values. Non-finite values are the caller's error to report; they are skipped here.
    pub fn observe(&mut self, xs: &[f32]) {
        let absmax = xs
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |a, v| a.max(v.abs()));
        if self.range == 0.0 {
            self.range = if absmax > 0.0 {
                absmax.log2().floor().exp2().max(f32::MIN_POSITIVE)
            } else {
                0.0
            };
        }
        while absmax >= self.range && self.range > 0.0 {
            let mut merged = vec![0u64; self.hist.len()];
            for j in 0..self.hist.len() / 2 {
                merged[self.hist.len() / 4 + j] = self.hist[2 * j] + self.hist[2 * j + 1];
            }
            self.hist = merged;
            self.range *= 2.0;
        }
        let w = 2.0 * self.range / self.hist.len() as f32;
        for &v in xs.iter().filter(|v| v.is_finite()) {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.count += 1;
            let b = if self.range > 0.0 {
                (((v + self.range) / w) as usize).min(self.hist.len() - 1)
            } else {
                self.hist.len() / 2
            };
            self.hist[b] += 1;
        }
    }

    /// Number of finite values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Observed (min, max).
    pub fn min_max(&self) -> (f32, f32) {
        (self.min, self.max)
    }

    fn center(&self, b: usize) -> f64 {
        let w = 2.0 * self.range as f64 / self.hist.len() as f64;
        -(self.range as f64) + (b as f64 + 0.5) * w
    }

    /// Expected squared int8 quantization error of the observed distribution in `[lo, hi]` (bin centers).
    pub fn quant_mse(&self, lo: f64, hi: f64) -> f64 {
        let s = ((hi - lo) / 255.0).max(f64::MIN_POSITIVE);
        let mut err = 0.0;
        for (b, &c) in self.hist.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let x = self.center(b);
            let q = ((x - lo) / s).round().clamp(0.0, 255.0) * s + lo;
            err += c as f64 * (x - q) * (x - q);
        }
        err / self.count.max(1) as f64
    }

    /// The range chosen by `method`, always containing 0 (so zero is exact after quantization).
    pub fn range(&self, method: Method) -> (f32, f32) {
        if self.count == 0 {
            return (0.0, 0.0);
        }
        let (mn, mx) = (self.min as f64, self.max as f64);
        let (lo, hi) = match method {
            Method::MinMax => (mn, mx),
            Method::Auto => return self.range(AUTO_CANDIDATES[0]),
            Method::Percentile(p) => {
                let tail = (1.0 - p / 100.0).max(0.0) / 2.0 * self.count as f64;
                let (mut acc, mut lo_b, mut hi_b) = (0.0, 0, self.hist.len() - 1);
                for (b, &c) in self.hist.iter().enumerate() {
                    acc += c as f64;
                    if acc > tail {
                        lo_b = b;
                        break;
                    }
                }
                acc = 0.0;
                for (b, &c) in self.hist.iter().enumerate().rev() {
                    acc += c as f64;
                    if acc > tail {
                        hi_b = b;
                        break;
                    }
                }
                let w = 2.0 * self.range as f64 / self.hist.len() as f64;
                (
                    (-(self.range as f64) + lo_b as f64 * w).max(mn),
                    (-(self.range as f64) + (hi_b + 1) as f64 * w).min(mx),
                )
            }
            Method::Mse => {
                let mut best = (f64::INFINITY, mn, mx);
                for i in 0..=100 {
                    let a = 1.0 - i as f64 * 0.0095; // shrink both ends down to 5% of the observed range
                    let (l, h) = (mn.min(0.0) * a, mx.max(0.0) * a);
                    let e = self.quant_mse(l, h);
                    if e < best.0 {
                        best = (e, l, h);
                    }
                }
                (best.1, best.2)
            }
            Method::Entropy => {
                let t = self.kl_threshold();
                (mn.max(-t), mx.min(t))
            }
        };
        (lo.min(0.0) as f32, hi.max(0.0) as f32)
    }

    /// TensorRT's entropy calibration on |x|: the threshold whose clipped distribution, quantized to 128
    /// levels, loses the least information (KL divergence).
    fn kl_threshold(&self) -> f64 {
        // fold the histogram onto |x|: bins self.hist.len()/2.. hold [0, R)
        let half = self.hist.len() / 2;
        let p_abs: Vec<f64> = (0..half)
            .map(|i| (self.hist[half + i] + self.hist[half - 1 - i]) as f64)
            .collect();
        let levels = 128;
        let w = self.range as f64 / half as f64;
        let mut best = (f64::INFINITY, half);
        for t in (levels..=half).step_by(8) {
            let mut p: Vec<f64> = p_abs[..t].to_vec();
            p[t - 1] += p_abs[t..].iter().sum::<f64>();
            let total: f64 = p.iter().sum();
            if total == 0.0 {
                continue;
            }
            // q: p merged into `levels` groups, spread back evenly over each group's non-empty bins
            let mut q = vec![0f64; t];
            for g in 0..levels {
                let (a, b) = (
                    g * t / levels,
                    ((g + 1) * t / levels).max(g * t / levels + 1),
                );
                let mass: f64 = p_abs[a..b.min(t)].iter().sum();
                let nz = p_abs[a..b.min(t)].iter().filter(|&&v| v > 0.0).count();
                for i in a..b.min(t) {
                    if p_abs[i] > 0.0 {
                        q[i] = mass / nz as f64;
                    }
                }
            }
            let qt: f64 = q.iter().sum();
            let mut kl = 0.0;
            for i in 0..t {
                if p[i] > 0.0 {
                    let pi = p[i] / total;
                    let qi = if qt > 0.0 { q[i] / qt } else { 0.0 };
                    kl += pi * (pi / qi.max(1e-12)).ln();
                }
            }
            if kl < best.0 {
                best = (kl, t);
            }
        }
        best.1 as f64 * w
    }
}

/// int16 parameters for the observed range `[lo, hi]` widened by `headroom`: symmetric (zero point 0),
/// `scale = headroom·max(|lo|, |hi|) / 32767` (1 for an all-zero range).
pub fn symmetric_i16(lo: f32, hi: f32, headroom: f32) -> QParams {
    let amax = (lo.abs().max(hi.abs()) as f64) * headroom as f64;
    let scale = if amax > 0.0 && amax.is_finite() {
        amax / 32767.0
    } else {
        1.0
    };
    QParams {
        scale: vec![scale as f32],
        zero_point: vec![0],
        axis: None,
    }
}

/// Asymmetric int8 parameters for a range that contains 0: `real = scale·(q − zp)`, q in [−128, 127],
/// with 0 exactly representable.
pub fn asymmetric_i8(lo: f32, hi: f32) -> QParams {
    let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    QParams {
        scale: vec![scale as f32],
        zero_point: vec![zp],
        axis: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64, f: impl Fn(f64) -> f64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                f(((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64) as f32
            })
            .collect()
    }

    #[test]
    fn streaming_equals_batch_and_minmax_is_exact() {
        let xs = data(20_000, 1, |u| (u - 0.3) * 7.0);
        let mut batch = Observer::default();
        batch.observe(&xs);
        // small values first, so the range has to grow several times
        let mut sorted = xs.clone();
        sorted.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        let mut stream = Observer::default();
        for c in sorted.chunks(777) {
            stream.observe(c);
        }
        assert_eq!(stream, batch);
        let (mn, mx) = xs
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!(batch.min_max(), (mn, mx));
        assert_eq!(batch.range(Method::MinMax), (mn, mx));
    }

    #[test]
    fn percentile_of_uniform() {
        let xs = data(100_000, 2, |u| u * 10.0 - 2.0); // uniform on [-2, 8)
        let mut o = Observer::default();
        o.observe(&xs);
        let (lo, hi) = o.range(Method::Percentile(98.0)); // 1% cut off each side: [-1.9, 7.9]
        assert!(
            (lo + 1.9).abs() < 0.02 && (hi - 7.9).abs() < 0.02,
            "{lo} {hi}"
        );
    }

    #[test]
    fn mse_and_entropy_clip_heavy_tails_and_lower_the_error() {
        // Laplace(0, 1): a few large outliers stretch min/max; most mass is near 0
        let xs = data(200_000, 3, |u| {
            if u < 0.5 {
                (2.0 * u).ln()
            } else {
                -(2.0 * (1.0 - u)).ln()
            }
        });
        let mut o = Observer::default();
        o.observe(&xs);
        let exact_mse = |(lo, hi): (f32, f32)| -> f64 {
            let q = asymmetric_i8(lo, hi);
            let (s, z) = (q.scale[0] as f64, q.zero_point[0] as f64);
            xs.iter()
                .map(|&x| {
                    let r = ((x as f64 / s).round() + z).clamp(-128.0, 127.0);
                    let d = x as f64 - (r - z) * s;
                    d * d
                })
                .sum::<f64>()
                / xs.len() as f64
        };
        let mm = o.range(Method::MinMax);
        for m in [Method::Mse, Method::Entropy, Method::Percentile(99.9)] {
            let r = o.range(m);
            assert!(
                r.1 - r.0 < mm.1 - mm.0,
                "{m:?} should clip: {r:?} vs {mm:?}"
            );
        }
        // the error-driven methods also beat min/max on the real error (a fixed percentile need not: at
        // 99.9% the clipped Laplace tail costs more than the finer step saves)
        for m in [Method::Mse, Method::Entropy] {
            let r = o.range(m);
            assert!(
                exact_mse(r) < exact_mse(mm),
                "{m:?}: {} vs minmax {}",
                exact_mse(r),
                exact_mse(mm)
            );
        }
    }

    #[test]
    fn zero_is_exact() {
        for (lo, hi) in [
            (-1.0f32, 3.0f32),
            (0.0, 6.0),
            (-5.0, -1.0),
            (0.5, 2.0),
            (0.0, 0.0),
        ] {
            let q = asymmetric_i8(lo, hi);
            let (s, z) = (q.scale[0], q.zero_point[0]);
            assert!(s > 0.0 && (-128..=127).contains(&z), "{lo} {hi}: {s} {z}");
            // the real value 0 maps to the integer z exactly
            assert_eq!(((0.0 / s).round() as i32) + z, z);
            // and the range's ends are representable to within half a step
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            if lo == hi {
                continue; // an all-zero tensor: any scale works
            }
            assert!((((-128 - z) as f32) * s - lo).abs() <= s * 0.5 + 1e-6);
            assert!((((127 - z) as f32) * s - hi).abs() <= s * 0.5 + 1e-6);
        }
    }
}
