//! Matrix products for the heads: ndarray's `general_mat_mul` (matrixmultiply's
//! packed, SIMD-dispatched sgemm), split into independent blocks of the output that
//! run on rayon's threads. Each block is a whole single-threaded sgemm, so the
//! split costs one extra packing of the shared operand and no synchronisation.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// Below this many multiply-adds a product runs on the calling thread.
const MIN_PAR_WORK: usize = 1 << 20;

/// `c ← alpha · a · b + beta · c`, split over rayon's threads.
///
/// # Shapes
/// `a`: [m, k], `b`: [k, n], `c`: [m, n] (any strides: pass `w.t()` for a transposed operand)
pub fn gemm(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, c: ArrayViewMut2<f32>) {
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!((a.nrows(), b.ncols()), c.dim(), "output shape");
    let parts = rayon::current_num_threads().max(1);
    split(alpha, a, b, beta, c, parts);
}

fn split(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: ArrayViewMut2<f32>,
    parts: usize,
) {
    let (m, n) = c.dim();
    let work = m * n * a.ncols();
    if parts <= 1 || work < MIN_PAR_WORK || (m < 16 && n < 16) {
        let mut c = c;
        general_mat_mul(alpha, &a, &b, beta, &mut c);
        return;
    }
    let left = parts / 2;
    // Split the output along its longer side, keeping blocks a multiple of 16
    // (matrixmultiply's kernels are 16 × 4 / 8 × 8 for f32 under AVX2).
    if n >= m {
        let at = ((n * left / parts) / 16 * 16).max(16).min(n);
        let (c1, c2) = c.split_at(Axis(1), at);
        let (b1, b2) = b.split_at(Axis(1), at);
        rayon::join(
            || split(alpha, a, b1, beta, c1, left),
            || split(alpha, a, b2, beta, c2, parts - left),
        );
    } else {
        let at = ((m * left / parts) / 16 * 16).max(16).min(m);
        let (c1, c2) = c.split_at(Axis(0), at);
        let (a1, a2) = a.split_at(Axis(0), at);
        rayon::join(
            || split(alpha, a1, b, beta, c1, left),
            || split(alpha, a2, b, beta, c2, parts - left),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn split_product_equals_plain_product() {
        let a = Array2::from_shape_fn((70, 300), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = Array2::from_shape_fn((90, 300), |(i, j)| ((i * 5 + j) % 13) as f32 - 6.0);
        let mut c = Array2::from_elem((70, 90), 1.0f32);
        gemm(0.5, a.view(), b.t(), 2.0, c.view_mut());
        let want = a.dot(&b.t()) * 0.5 + 2.0;
        assert_eq!(c, want);
    }
}
