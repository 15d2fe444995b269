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

/// Defines `$name`, which runs `$portable` (an `#[inline(always)]` function with the same
/// signature) by its copy compiled for the CPU's widest vectors, and the two copies `$avx512`
/// and `$avx2` (`unsafe`: the CPU must have the features), which the tests call directly.
macro_rules! wide_copies {
    (
        $(#[$doc:meta])*
        $vis:vis fn $name:ident, $avx512:ident, $avx2:ident = $portable:ident
            ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
    ) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            match $crate::model::wide::wide() {
                // SAFETY: `wide` checked that the CPU has the features.
                #[cfg(target_arch = "x86_64")]
                $crate::model::wide::Wide::Avx512 => unsafe { $avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::model::wide::Wide::Avx2 => unsafe { $avx2($($arg),*) },
                $crate::model::wide::Wide::Baseline => $portable($($arg),*),
            }
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled for AVX-512.")]
        ///
        /// # Safety
        /// The CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $avx512($($arg: $ty),*) $(-> $ret)? {
            $portable($($arg),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled for AVX2.")]
        ///
        /// # Safety
        /// The CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2($($arg: $ty),*) $(-> $ret)? {
            $portable($($arg),*)
        }
    };
}
pub(crate) use wide_copies;
