//! The AMX kernel: a 32×32 f32 block as four 16×16 accumulator tiles (tmm0–3), fed by two
//! 16-row activation tiles (tmm4–5) and two weight tiles (tmm6–7) per 32 inputs. Written with
//! `asm!` because Rust's AMX intrinsics are not stable.

use std::arch::asm;

/// `ldtilecfg`'s 64-byte operand: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Linux's `arch_prctl` request for permission to use an extended state component, and AMX's
/// tile-data component.
const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
const XFEATURE_XTILEDATA: libc::c_ulong = 18;

/// Whether the CPU has AMX-TILE and AMX-BF16 and the kernel lets this process use them (the
/// permission is asked for once, for the whole process).
pub(super) fn available() -> bool {
    // Leaf 7 exists on every x86_64 CPU that has AVX-512 (checked by the caller).
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (tile, bf16) = ((leaf7.edx >> 24) & 1 == 1, (leaf7.edx >> 22) & 1 == 1);
    if !(tile && bf16) {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call with integer arguments.
        let r = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Loads the tile configuration on the calling thread.
///
/// # Safety
/// [`available`] returned true in this process.
pub(super) unsafe fn configure() {
    asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack, readonly));
}

/// `c[0..32][0..32] = a[0..32][0..32·k_blocks] · panel`, `a` row-major bf16 with `a_stride`
/// elements per row, `panel` the `k_blocks` packed blocks of one column block, `c` row-major
/// f32 with `c_stride` elements per row.
///
/// # Safety
/// [`configure`] ran on this thread; `a` has 32 readable rows of `32·k_blocks` elements,
/// `panel` `k_blocks` blocks of 1024 elements, `c` 32 writable rows of 32.
pub(super) unsafe fn block(
    a: *const u16,
    a_stride: usize,
    panel: *const u16,
    k_blocks: usize,
    c: *mut f32,
    c_stride: usize,
) {
    let (a_bytes, c_bytes) = (a_stride * 2, c_stride * 4);
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
    for kb in 0..k_blocks {
        let ak = a.add(kb * 32);
        let bk = panel.add(kb * 1024);
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) ak,
            a1 = in(reg) ak.add(16 * a_stride),
            sa = in(reg) a_bytes,
            b0 = in(reg) bk,
            b1 = in(reg) bk.add(512),
            sb = in(reg) 64usize,
            options(nostack, readonly)
        );
    }
    asm!(
        "tilestored [{c00} + {sc}*1], tmm0",
        "tilestored [{c01} + {sc}*1], tmm1",
        "tilestored [{c10} + {sc}*1], tmm2",
        "tilestored [{c11} + {sc}*1], tmm3",
        c00 = in(reg) c,
        c01 = in(reg) c.add(16),
        c10 = in(reg) c.add(16 * c_stride),
        c11 = in(reg) c.add(16 * c_stride + 16),
        sc = in(reg) c_bytes,
        options(nostack)
    );
}
