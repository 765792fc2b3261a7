//! Pooling in xfer: what a backbone's `features` output holds becomes one
//! vector per image, as the manifest's `[output]` says (`pool`,
//! `prefix_tokens`, `l2`). Built-in models pool inside their graph (`none`);
//! user-added ones may give feature maps `[N, C, H, W]` or tokens `[N, T, D]`.

use ndarray::{Array2, ArrayViewD, Axis, Ix3, Ix4};

use crate::error::{Next, Refusal};
use crate::models::zoo::{OutputSpec, Pool};

/// The width of one image's pooled vector for an output of `shape`
/// (batch axis first), or why that output cannot be pooled so.
pub(crate) fn pooled_width(shape: &[usize], spec: &OutputSpec) -> Result<usize, Refusal> {
    let k = spec.prefix_tokens;
    match (spec.pool, shape) {
        (Pool::None, [_, rest @ ..]) => {
            // [N, D] or [N, D, 1, 1]: anything with one non-unit axis.
            let big: Vec<usize> = rest.iter().copied().filter(|&d| d != 1).collect();
            match big.as_slice() {
                [d] => Ok(*d),
                [] if !rest.is_empty() => Ok(1),
                _ => Err(Refusal::new(
                    format!("holds {shape:?}, not one vector per image, and is not pooled"),
                    Next::ChoosePooling,
                )),
            }
        }
        (Pool::Avg | Pool::Max, [_, c, _, _]) => Ok(*c),
        (Pool::Avg | Pool::Max, _) => Err(Refusal::new(
            format!(
                "holds {shape:?}, but pooling {} needs feature maps [N, C, H, W]",
                spec.pool.name()
            ),
            Next::ChoosePooling,
        )),
        (Pool::Cls, [_, t, d]) if *t >= 1 => Ok(*d),
        (Pool::Mean | Pool::ClsMean, [_, t, d]) if *t > k => {
            Ok(if spec.pool == Pool::Mean { *d } else { 2 * d })
        }
        (Pool::Mean | Pool::ClsMean, [_, t, _]) => Err(Refusal::new(
            format!(
                "holds {t} tokens, but pooling {} skips {k} prefix tokens and would average none",
                spec.pool.name()
            ),
            Next::CheckPrefixTokens,
        )),
        (_, _) => Err(Refusal::new(
            format!(
                "holds {shape:?}, but pooling {} needs tokens [N, T, D]",
                spec.pool.name()
            ),
            Next::ChoosePooling,
        )),
    }
}

/// Pools a batch of `n` images' output into `[n, width]`, then L2-normalises
/// each row when `spec.l2` (a zero row stays zero, as `F.normalize` leaves it).
///
/// # Shapes
/// `none`: [n, D] (or [n, D, 1, 1]) → [n, D]; `avg`/`max`: [n, C, H, W] → [n, C];
/// `cls`/`mean`: [n, T, D] → [n, D]; `cls+mean`: [n, T, D] → [n, 2·D]
pub(crate) fn pool(
    out: ArrayViewD<f32>,
    n: usize,
    spec: &OutputSpec,
) -> Result<Array2<f32>, String> {
    let shape = out.shape().to_vec();
    if shape.first() != Some(&n) {
        return Err(format!("has shape {shape:?} for a batch of {n} images"));
    }
    let width = pooled_width(&shape, spec).map_err(|r| r.reason)?;
    let mut pooled = Array2::<f32>::zeros((n, width));
    match spec.pool {
        Pool::None => {
            let flat = out
                .to_shape((n, width))
                .map_err(|e| format!("has shape {shape:?}: {e}"))?;
            pooled.assign(&flat);
        }
        Pool::Avg | Pool::Max => {
            let maps = out.into_dimensionality::<Ix4>().expect("checked rank 4");
            for (mut row, img) in pooled.outer_iter_mut().zip(maps.outer_iter()) {
                for (v, map) in row.iter_mut().zip(img.outer_iter()) {
                    *v = if spec.pool == Pool::Avg {
                        mean(map.iter().copied(), map.len())
                    } else {
                        map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                    };
                }
            }
        }
        Pool::Cls | Pool::Mean | Pool::ClsMean => {
            let tokens = out.into_dimensionality::<Ix3>().expect("checked rank 3");
            let d = tokens.len_of(Axis(2));
            let k = spec.prefix_tokens;
            for (mut row, img) in pooled.outer_iter_mut().zip(tokens.outer_iter()) {
                let mut at = 0;
                if matches!(spec.pool, Pool::Cls | Pool::ClsMean) {
                    row.slice_mut(ndarray::s![..d]).assign(&img.row(0));
                    at = d;
                }
                if matches!(spec.pool, Pool::Mean | Pool::ClsMean) {
                    let patches = img.slice(ndarray::s![k.., ..]);
                    for (j, v) in row
                        .slice_mut(ndarray::s![at..at + d])
                        .iter_mut()
                        .enumerate()
                    {
                        *v = mean(patches.column(j).iter().copied(), patches.nrows());
                    }
                }
            }
        }
    }
    if spec.l2 {
        for mut row in pooled.outer_iter_mut() {
            let norm = row
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            // torch.nn.functional.normalize's eps.
            let norm = norm.max(1e-12) as f32;
            row.mapv_inplace(|x| x / norm);
        }
    }
    Ok(pooled)
}

/// The mean of `len` values, summed in f64.
fn mean(values: impl Iterator<Item = f32>, len: usize) -> f32 {
    (values.map(f64::from).sum::<f64>() / len as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn};

    fn spec(pool: Pool, prefix_tokens: usize, l2: bool) -> OutputSpec {
        OutputSpec {
            features: "x".into(),
            feature_dim: 0,
            pool,
            prefix_tokens,
            l2,
            logits: None,
            n_logits: None,
        }
    }

    #[test]
    fn token_pooling_by_hand() {
        // One image, 3 tokens (1 prefix) of width 2.
        let t = Array::from_shape_vec(IxDyn(&[1, 3, 2]), vec![1., 2., 3., 4., 5., 8.]).unwrap();
        let p = |pool, l2| pool_view(&t, pool, 1, l2);
        assert_eq!(p(Pool::Cls, false), vec![1., 2.]);
        assert_eq!(p(Pool::Mean, false), vec![4., 6.]);
        assert_eq!(p(Pool::ClsMean, false), vec![1., 2., 4., 6.]);
        let l2 = p(Pool::Mean, true);
        assert!(
            (l2[0] - 4. / 52f32.sqrt()).abs() < 1e-7 && (l2[1] - 6. / 52f32.sqrt()).abs() < 1e-7
        );
    }

    #[test]
    fn map_pooling_by_hand() {
        // One image, 2 channels of 2×2.
        let m = Array::from_shape_vec(
            IxDyn(&[1, 2, 2, 2]),
            vec![1., 2., 3., 6., -1., -2., -3., -4.],
        )
        .unwrap();
        assert_eq!(pool_view(&m, Pool::Avg, 1, false), vec![3., -2.5]);
        assert_eq!(pool_view(&m, Pool::Max, 1, false), vec![6., -1.]);
    }

    fn pool_view(a: &Array<f32, IxDyn>, p: Pool, k: usize, l2: bool) -> Vec<f32> {
        pool(a.view(), 1, &spec(p, k, l2))
            .unwrap()
            .into_raw_vec_and_offset()
            .0
    }

    #[test]
    fn widths_and_refusals() {
        let w = |shape: &[usize], p, k| pooled_width(shape, &spec(p, k, false));
        assert_eq!(w(&[2, 768], Pool::None, 1), Ok(768));
        assert_eq!(w(&[2, 1280, 1, 1], Pool::None, 1), Ok(1280));
        assert_eq!(
            w(&[2, 197, 768], Pool::None, 1).unwrap_err().next,
            Some(Next::ChoosePooling)
        );
        assert_eq!(w(&[2, 512, 7, 7], Pool::Avg, 1), Ok(512));
        assert_eq!(w(&[2, 261, 384], Pool::ClsMean, 5), Ok(768));
        let e = w(&[2, 5, 384], Pool::Mean, 5).unwrap_err();
        assert!(e.reason.contains("5 prefix tokens"), "{e:?}");
        assert_eq!(e.next, Some(Next::CheckPrefixTokens));
        assert!(w(&[2, 197, 768], Pool::Avg, 1)
            .unwrap_err()
            .reason
            .contains("[N, C, H, W]"));
        assert!(w(&[2, 512, 7, 7], Pool::Cls, 1)
            .unwrap_err()
            .reason
            .contains("[N, T, D]"));
    }
}
