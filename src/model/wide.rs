//! The widest vector instructions this CPU has, detected once, for element-wise loops compiled
//! again under `#[target_feature]`.
//!
//! The crate is built for the x86-64 baseline (SSE2: 4 lanes, no FMA), so a plain loop that the
//! compiler vectorises runs 4 lanes at a time even on a CPU with AVX-512. The hot element-wise
//! loops (the LSTM gates, forward and backward) have a copy compiled for AVX2 and one for
//! AVX-512, chosen at run time. The copies do the same operations element by element: the
//! compiler never fuses a multiply and an add on its own, and no loop reduces across lanes, so
//! they give the same bits as the baseline copy (tested where they are used).

/// Which compiled copy of a loop to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wide {
    /// AVX-512F: 16 f32 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2: 8 f32 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The baseline the crate is compiled for.
    Baseline,
}

/// The widest copy this CPU runs, detected once.
pub(crate) fn wide() -> Wide {
    static WIDE: std::sync::OnceLock<Wide> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Wide::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Wide::Avx2;
            }
        }
        Wide::Baseline
    })
}
