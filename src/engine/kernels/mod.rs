//! Arithmetic kernels grouped by instruction set, behind one dispatch point.
//!
//! - [`scalar`]: portable reference kernels; the oracle every SIMD kernel is tested against.
//! - `aarch64`: NEON (baseline, dotprod, i8mm) kernels.
//! - `x86_64`: AVX2 kernels.

pub mod scalar;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use std::fmt;
use std::str::FromStr;

/// An instruction-set path for the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelPath {
    Scalar,
    /// aarch64 ARMv8.0 NEON (Cortex-A72, Raspberry Pi 4).
    Neon,
    /// aarch64 NEON + SDOT (Cortex-A76, Raspberry Pi 5).
    Dotprod,
    /// aarch64 NEON + SDOT + SMMLA (ARMv8.6).
    I8mm,
    /// x86_64 AVX2 + FMA.
    Avx2,
}

impl KernelPath {
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Neon => "neon",
            KernelPath::Dotprod => "dotprod",
            KernelPath::I8mm => "i8mm",
            KernelPath::Avx2 => "avx2",
        }
    }

    /// Whether this CPU can run this path.
    pub fn supported(self) -> bool {
        match self {
            KernelPath::Scalar => true,
            #[cfg(target_arch = "aarch64")]
            KernelPath::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            KernelPath::Dotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[cfg(target_arch = "aarch64")]
            KernelPath::I8mm => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
                    && std::arch::is_aarch64_feature_detected!("i8mm")
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU supports, lowest first.
    pub fn available() -> Vec<KernelPath> {
        [
            KernelPath::Scalar,
            KernelPath::Neon,
            KernelPath::Dotprod,
            KernelPath::I8mm,
            KernelPath::Avx2,
        ]
        .into_iter()
        .filter(|p| p.supported())
        .collect()
    }

    /// The best path this CPU supports.
    pub fn best() -> KernelPath {
        *Self::available().last().unwrap_or(&KernelPath::Scalar)
    }

    /// Resolve a user request (`auto` or a path name).
    pub fn resolve(request: &str) -> Result<KernelPath, String> {
        if request == "auto" {
            return Ok(Self::best());
        }
        let p: KernelPath = request.parse()?;
        if !p.supported() {
            return Err(format!(
                "kernel path '{request}' is not supported by this CPU (available: {})",
                Self::available()
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(p)
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KernelPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "scalar" => KernelPath::Scalar,
            "neon" => KernelPath::Neon,
            "dotprod" => KernelPath::Dotprod,
            "i8mm" => KernelPath::I8mm,
            "avx2" => KernelPath::Avx2,
            other => {
                return Err(format!(
                    "unknown kernel path '{other}' (expected auto, scalar, neon, dotprod, i8mm or avx2)"
                ))
            }
        })
    }
}

/// Dot product of two int8 vectors widened to int32, on the chosen path.
/// (The first kernel behind the dispatch point; the convolution kernels follow it.)
pub fn dot_i8(path: KernelPath, a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm if path.supported() => {
            aarch64::dot_i8(path, a, b)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 if path.supported() => x86_64::dot_i8(a, b),
        _ => scalar::dot_i8(a, b),
    }
}
