//! Exact nearest neighbours by cosine similarity, blocked: the rows are
//! L2-normalised, cut into blocks of [`BLOCK`] rows, and every pair of blocks
//! (I, J ≥ I) is one matrix product X_I · X_Jᵀ (ndarray's sgemm), so memory is
//! the features plus one [`BLOCK`]² similarity block per thread, whatever the
//! row count. Each block updates the k best neighbours of its rows on both
//! sides and collects the pairs at or above a similarity threshold. The work
//! is n²·d/2 multiply-adds: at 100,000 × 1,280 about 6.4·10¹² — minutes on 2
//! cores (docs/guide.md has the measured figures); past a few hundred thousand
//! rows an approximate index (HNSW, IVF-PQ) is the way.

use std::sync::Mutex;

use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows per block: a 1024 × 1024 similarity block is 4 MiB.
pub(crate) const BLOCK: usize = 1024;

/// Most pairs above the threshold kept (the most similar first).
pub(crate) const MAX_PAIRS: usize = 1_000_000;

/// Rows scaled to unit length (all-zero rows stay zero: similarity 0 to everything).
///
/// # Shapes
/// `x`: [n, d] → [n, d]
pub fn normalize_rows(x: ArrayView2<f32>) -> Array2<f32> {
    let d = x.ncols().max(1);
    let mut flat: Vec<f32> = x.iter().copied().collect(); // row-major whatever x's layout
    flat.par_chunks_mut(d).for_each(|r| {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|v| *v /= n);
        }
    });
    Array2::from_shape_vec(x.dim(), flat).expect("n × d values")
}

/// The k most similar other rows of one row, most similar first.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopK {
    /// (similarity, row), sorted by similarity descending (ties: lower row first).
    pub(crate) items: Vec<(f32, u32)>,
}

impl TopK {
    fn offer(&mut self, k: usize, sim: f32, row: u32) {
        if self.items.len() == k {
            let last = self.items[k - 1];
            if sim < last.0 || (sim == last.0 && row > last.1) {
                return;
            }
        }
        let pos = self
            .items
            .partition_point(|&(s, r)| s > sim || (s == sim && r < row));
        self.items.insert(pos, (sim, row));
        self.items.truncate(k);
    }
}

/// What [`search`] finds.
pub struct Neighbours {
    /// Per row, its k nearest other rows.
    pub(crate) topk: Vec<TopK>,
    /// Pairs (i < j) with similarity ≥ the threshold, the most similar first.
    pub pairs: Vec<(u32, u32, f32)>,
    /// True when more than [`MAX_PAIRS`] pairs passed the threshold (the rest dropped).
    pub(crate) truncated: bool,
}

/// The k nearest neighbours of every row of `x` (unit rows) by cosine
/// similarity, and every pair at or above `threshold`, exactly.
///
/// # Shapes
/// `x`: [n, d], rows of unit length
pub fn search(x: ArrayView2<f32>, k: usize, threshold: f32) -> Neighbours {
    let n = x.nrows();
    assert!(n <= u32::MAX as usize, "row indices fit in u32");
    let n_blocks = n.div_ceil(BLOCK);
    let state: Vec<Mutex<Vec<TopK>>> = (0..n_blocks)
        .map(|b| {
            let len = BLOCK.min(n - b * BLOCK);
            Mutex::new(vec![TopK::default(); len])
        })
        .collect();
    let tasks: Vec<(usize, usize)> = (0..n_blocks)
        .flat_map(|i| (i..n_blocks).map(move |j| (i, j)))
        .collect();
    let pairs: Mutex<Vec<(u32, u32, f32)>> = Mutex::new(Vec::new());
    tasks.par_iter().for_each(|&(bi, bj)| {
        let (i0, j0) = (bi * BLOCK, bj * BLOCK);
        let xi = x.slice(s![i0..(i0 + BLOCK).min(n), ..]);
        let xj = x.slice(s![j0..(j0 + BLOCK).min(n), ..]);
        let sim = xi.dot(&xj.t()); // [|I|, |J|]
        let mut local_pairs = Vec::new();
        {
            let mut rows = state[bi].lock().expect("no panics while locked");
            for (a, row) in sim.axis_iter(Axis(0)).enumerate() {
                let ra = (i0 + a) as u32;
                for (b, &v) in row.iter().enumerate() {
                    let rb = (j0 + b) as u32;
                    if ra == rb {
                        continue;
                    }
                    if k > 0 {
                        rows[a].offer(k, v, rb);
                    }
                    if ra < rb && v >= threshold {
                        local_pairs.push((ra, rb, v));
                    }
                }
            }
        }
        if bj != bi && k > 0 {
            let mut rows = state[bj].lock().expect("no panics while locked");
            for (b, col) in sim.axis_iter(Axis(1)).enumerate() {
                for (a, &v) in col.iter().enumerate() {
                    rows[b].offer(k, v, (i0 + a) as u32);
                }
            }
        }
        if !local_pairs.is_empty() {
            pairs
                .lock()
                .expect("no panics while locked")
                .extend(local_pairs);
        }
    });
    let mut pairs = pairs.into_inner().expect("no panics while locked");
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let truncated = pairs.len() > MAX_PAIRS;
    pairs.truncate(MAX_PAIRS);
    let topk = state
        .into_iter()
        .flat_map(|m| m.into_inner().expect("no panics while locked"))
        .collect();
    Neighbours {
        topk,
        pairs,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over all pairs, for comparison.
    fn brute(x: ArrayView2<f32>, k: usize, t: f32) -> (Vec<Vec<u32>>, Vec<(u32, u32)>) {
        let n = x.nrows();
        let sim = x.dot(&x.t());
        let mut topk = Vec::new();
        let mut pairs = Vec::new();
        for i in 0..n {
            let mut o: Vec<(f32, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (sim[[i, j]], j as u32))
                .collect();
            o.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            topk.push(o.iter().take(k).map(|p| p.1).collect());
            for j in i + 1..n {
                if sim[[i, j]] >= t {
                    pairs.push((i as u32, j as u32));
                }
            }
        }
        (topk, pairs)
    }

    #[test]
    fn blocked_search_equals_brute_force_across_block_edges() {
        let mut rng = crate::train::head::Rng::new(7);
        let n = BLOCK * 2 + 37;
        let mut x = Array2::from_shape_fn((n, 8), |_| rng.uniform(-0.5, 0.5));
        // Near-copies across blocks.
        for (a, b) in [(3usize, BLOCK + 5), (BLOCK - 1, 2 * BLOCK + 1), (10, 11)] {
            let row = x.row(a).mapv(|v| v * 1.001);
            x.row_mut(b).assign(&row);
        }
        let x = normalize_rows(x.view());
        let got = search(x.view(), 3, 0.999);
        let (topk, pairs) = brute(x.view(), 3, 0.999);
        let mut gp: Vec<(u32, u32)> = got.pairs.iter().map(|p| (p.0, p.1)).collect();
        gp.sort();
        let mut want = pairs;
        want.sort();
        assert_eq!(gp, want);
        assert!(want.contains(&(3, BLOCK as u32 + 5)));
        for (i, want) in topk.iter().enumerate() {
            let g: Vec<u32> = got.topk[i].items.iter().map(|p| p.1).collect();
            // Similarities within float noise may swap order; compare the sets' sims.
            let gs: f32 = got.topk[i].items.iter().map(|p| p.0).sum();
            let ws: f32 = want.iter().map(|&j| x.row(i).dot(&x.row(j as usize))).sum();
            assert!((gs - ws).abs() < 1e-4, "row {i}: {g:?} vs {want:?}");
        }
    }
}
