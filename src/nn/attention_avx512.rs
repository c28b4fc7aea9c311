//! The AVX-512 products of the CPU attention kernel: `q·kᵀ` against keys packed once per
//! head in panels of 32, and probabilities times values copied once per head into
//! contiguous rows; both register-tiled, with no packing per query block (gemm packs its
//! operands on every call, which at a head dim of 128 cost a tenth of the attention time).

use std::arch::x86_64::*;

use crate::nn::cpu::Rows;

/// Keys per panel: the width of a `q·kᵀ` tile, two vectors.
pub const PANEL: usize = 32;
/// Query rows per `q·kᵀ` tile: 12 × 2 accumulators, two key vectors and a broadcast.
const QK_ROWS: usize = 12;
/// Query rows and value vectors (of 16 columns) per `p·v` tile: 6 × 4 accumulators, four
/// value vectors and a broadcast.
const PV_ROWS: usize = 6;
const PV_VECTORS: usize = 4;
/// Keys per pass of `p·v`: 64 value rows of 128 take 32 KiB, which stay in L1 while every
/// row tile of the block goes through them.
const PV_KEYS: usize = 64;

/// Whether these kernels serve a head dim of `d`: a multiple of 16 up to 128, on a CPU with
/// AVX-512F.
pub fn available(d: usize) -> bool {
    d > 0 && d.is_multiple_of(16) && d <= 128 && std::arch::is_x86_feature_detected!("avx512f")
}

/// Floats the packed keys of one head take: `⌈sk / 32⌉` panels of `d × 32`.
pub fn packed_keys_len(sk: usize, d: usize) -> usize {
    sk.div_ceil(PANEL) * PANEL * d
}

/// Packs one head's keys into `dst` (zeroed, [`packed_keys_len`] long): panel `j` holds,
/// dim after dim, the 32 values of keys `32j..32j + 32` (zero past the last key).
/// `key(s)` is key `s`'s row of `d` values.
pub fn pack_keys<'a>(key: impl Fn(usize) -> &'a [f32], sk: usize, d: usize, dst: &mut [f32]) {
    for (j, panel) in dst.chunks_exact_mut(PANEL * d).enumerate() {
        for s in 0..PANEL.min(sk - j * PANEL) {
            for (dd, &x) in key(j * PANEL + s).iter().enumerate() {
                panel[dd * PANEL + s] = x;
            }
        }
    }
}

/// Copies `rows` queries (`d` values each, `q_stride` apart from `q`) into `qt` in tiles of
/// 12 rows laid out dim after dim (`[d][12]`, zero rows past the last), as [`scores`]
/// reads them.
///
/// # Safety
/// `q` points at `rows` rows of `d` values `q_stride` apart.
pub unsafe fn pack_queries(
    q: *const f32,
    q_stride: usize,
    rows: usize,
    d: usize,
    qt: &mut Vec<f32>,
) {
    qt.clear();
    qt.resize(rows.div_ceil(QK_ROWS) * QK_ROWS * d, 0.0);
    for row in 0..rows {
        let tile = &mut qt[row / QK_ROWS * QK_ROWS * d..];
        // SAFETY: query row `row` has `d` values.
        let values = unsafe { std::slice::from_raw_parts(q.add(row * q_stride), d) };
        for (dd, &x) in values.iter().enumerate() {
            tile[dd * QK_ROWS + row % QK_ROWS] = x;
        }
    }
}

/// Scores of `rows` queries (packed by [`pack_queries`]) against packed keys: `out[r][c] =
/// q_r · k_c` for every key column of the panels (those past the last key are 0). Each
/// panel of keys, loaded into L1 once, meets every tile of queries.
///
/// # Safety
/// `available(d)`; `keys` holds whole panels of a head dim `d`, and `out` has `rows`
/// writable rows of at least 32 values per panel, `out_stride` apart.
#[target_feature(enable = "avx512f")]
pub unsafe fn scores(
    qt: &[f32],
    rows: usize,
    d: usize,
    keys: &[f32],
    out: *mut f32,
    out_stride: usize,
) {
    for (j, panel) in keys.chunks_exact(PANEL * d).enumerate() {
        for (t, qs) in qt.chunks_exact(QK_ROWS * d).enumerate() {
            let first = t * QK_ROWS;
            let out = out.wrapping_add(first * out_stride + j * PANEL);
            // SAFETY: rows `first..` of `out` (at most 12, fewer in the last tile) have 32
            // values from column `32j`.
            unsafe { qk_tile(qs, panel, out, out_stride, QK_ROWS.min(rows - first)) };
        }
    }
}

/// One panel of 32 keys against one tile of 12 queries (`qs`, `[d][12]`); the first `valid`
/// rows of the result are stored.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn qk_tile(qs: &[f32], panel: &[f32], out: *mut f32, out_stride: usize, valid: usize) {
    let mut acc = [[_mm512_setzero_ps(); 2]; QK_ROWS];
    for (k, qs) in panel.chunks_exact(PANEL).zip(qs.chunks_exact(QK_ROWS)) {
        // SAFETY: `k` holds 32 values.
        let (k0, k1) = unsafe {
            (
                _mm512_loadu_ps(k.as_ptr()),
                _mm512_loadu_ps(k.as_ptr().add(16)),
            )
        };
        for (acc, &x) in acc.iter_mut().zip(qs) {
            let a = _mm512_set1_ps(x);
            acc[0] = _mm512_fmadd_ps(a, k0, acc[0]);
            acc[1] = _mm512_fmadd_ps(a, k1, acc[1]);
        }
    }
    for (r, acc) in acc.iter().take(valid).enumerate() {
        // SAFETY: the caller's guarantee for the first `valid` rows.
        unsafe {
            let dst = out.add(r * out_stride);
            _mm512_storeu_ps(dst, acc[0]);
            _mm512_storeu_ps(dst.add(16), acc[1]);
        }
    }
}

/// Adds `p · v` to `acc` with `accumulate`, else writes it there: `rows` rows of
/// probabilities over `sk` keys times `sk` contiguous rows of `d` values, into `rows` rows of
/// `d`. Without `accumulate`, `acc` is not read (fresh zeroed pages read first would fault
/// twice).
///
/// # Safety
/// `available(d)`; `p` points at `rows` rows of at least `sk` values `p_stride` apart, `v`
/// holds `sk · d` values and `acc` describes `rows` writable rows of `d` that overlap
/// neither.
#[target_feature(enable = "avx512f")]
pub unsafe fn weighted_values(
    p: *const f32,
    p_stride: usize,
    rows: usize,
    v: &[f32],
    d: usize,
    acc: Rows<*mut f32>,
    accumulate: bool,
) {
    let (acc, acc_stride) = (acc.ptr, acc.stride);
    let sk = v.len() / d;
    for start in (0..sk).step_by(PV_KEYS) {
        let keys = PV_KEYS.min(sk - start);
        let v = &v[start * d..(start + keys) * d];
        let p = p.wrapping_add(start);
        let accumulate = accumulate || start > 0;
        for col in (0..d).step_by(16 * PV_VECTORS) {
            let nv = PV_VECTORS.min((d - col) / 16);
            let mut r = 0;
            while r < rows {
                let n = PV_ROWS.min(rows - r);
                let p = p.wrapping_add(r * p_stride);
                let acc = acc.wrapping_add(r * acc_stride + col);
                let tile = Tile {
                    p,
                    p_stride,
                    v: &v[col..],
                    d,
                    keys,
                    acc,
                    acc_stride,
                    accumulate,
                };
                macro_rules! dispatch {
                    ($($r:literal)*) => {
                        match (n, nv) {
                            $(
                                ($r, 4) => unsafe { pv_tile::<$r, 4>(tile) },
                                ($r, 3) => unsafe { pv_tile::<$r, 3>(tile) },
                                ($r, 2) => unsafe { pv_tile::<$r, 2>(tile) },
                                ($r, 1) => unsafe { pv_tile::<$r, 1>(tile) },
                            )*
                            _ => unreachable!("head dims are checked by `available`"),
                        }
                    };
                }
                // SAFETY: rows `r..r + n` of `p` and `acc`, keys `start..start + keys`,
                // columns `col..col + 16 · nv`.
                dispatch!(1 2 3 4 5 6);
                r += n;
            }
        }
    }
}

/// One tile of [`weighted_values`]: rows of probabilities from `p`, `keys` rows of values
/// `v` (`d` apart, read from their first column on), rows of `acc` from their first column
/// on.
#[derive(Clone, Copy)]
struct Tile<'a> {
    p: *const f32,
    p_stride: usize,
    v: &'a [f32],
    d: usize,
    keys: usize,
    acc: *mut f32,
    acc_stride: usize,
    /// Add to `acc`'s values, else write over them.
    accumulate: bool,
}

/// [`weighted_values`] for `R` rows and `16 · NV` columns.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pv_tile<const R: usize, const NV: usize>(t: Tile<'_>) {
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    for (r, acc) in acc.iter_mut().enumerate().filter(|_| t.accumulate) {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: `t.acc` has `R` rows of `16 · NV` values, `acc_stride` apart.
            *a = unsafe { _mm512_loadu_ps(t.acc.add(r * t.acc_stride + 16 * i)) };
        }
    }
    let p_rows: [*const f32; R] = std::array::from_fn(|r| t.p.wrapping_add(r * t.p_stride));
    for s in 0..t.keys {
        let mut vs = [_mm512_setzero_ps(); NV];
        for (i, x) in vs.iter_mut().enumerate() {
            // SAFETY: row `s` of `v` has `16 · NV` values from its first column.
            *x = unsafe { _mm512_loadu_ps(t.v[s * t.d + 16 * i..].as_ptr()) };
        }
        for (acc, &row) in acc.iter_mut().zip(&p_rows) {
            // SAFETY: each row of `p` has a value for key `s` (the caller's guarantee).
            let a = _mm512_set1_ps(unsafe { *row.add(s) });
            for (a_i, &v_i) in acc.iter_mut().zip(&vs) {
                *a_i = _mm512_fmadd_ps(a, v_i, *a_i);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (i, &a) in acc.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_ps(t.acc.add(r * t.acc_stride + 16 * i), a) };
        }
    }
}
