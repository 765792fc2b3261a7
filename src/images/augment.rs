//! Augmented views (`xfer extract --views K`): which crop, flip and colour
//! jitter each view of each image gets. This module only decides parameters;
//! the pixels are made by [`preprocess::view_tensor`] (the one pixel module).
//!
//! View 0 of every image is the plain centre crop (the tensor of a plain
//! extraction); views 1..K are torchvision's `RandomResizedCrop(crop, scale,
//! ratio)` followed by `RandomHorizontalFlip(p)` and, when the recipe asks for
//! it, a mild colour jitter. Every view's parameters come from a generator
//! seeded by SHA-256 of (seed, the image's path relative to the dataset root,
//! the view index), so any row can be recomputed from the file alone and a
//! resumed run draws exactly what an uninterrupted one would.
//!
//! [`preprocess::view_tensor`]: crate::images::preprocess::view_tensor

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, Setting};
use crate::images::preprocess::{CropBox, Jitter, ViewOps};
use crate::train::head::Rng;

/// How augmented views are drawn. Unknown keys in a TOML recipe are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentRecipe {
    /// The recipe's name (`tutorial`, `light`, or the TOML file's stem).
    pub(crate) name: String,
    /// Range of the crop's area as a fraction of the image's (torchvision `scale`).
    pub(crate) scale: [f64; 2],
    /// Range of the crop's aspect ratio w/h, sampled log-uniformly (torchvision `ratio`).
    pub(crate) ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub(crate) flip: f64,
    /// Colour jitter strengths (factors drawn uniformly in [1 − s, 1 + s]); 0 = none.
    #[serde(default)]
    pub(crate) brightness: f32,
    #[serde(default)]
    pub(crate) contrast: f32,
    #[serde(default)]
    pub(crate) saturation: f32,
}

impl AugmentRecipe {
    /// The tutorial's method-1 training transform: `RandomSizedCrop` (torchvision's
    /// default scale 0.08–1, ratio 3/4–4/3) and `RandomHorizontalFlip()`.
    pub(crate) fn tutorial() -> AugmentRecipe {
        AugmentRecipe {
            name: "tutorial".into(),
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip: 0.5,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }

    /// Milder crops (at least 35 % of the area), flips and a small colour jitter.
    pub(crate) fn light() -> AugmentRecipe {
        AugmentRecipe {
            name: "light".into(),
            scale: [0.35, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip: 0.5,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
        }
    }

    /// `tutorial`, `light`, or the path of a TOML file with the fields of
    /// [`AugmentRecipe`] (its `name` defaults to the file's stem).
    pub fn parse(spec: &str) -> Result<AugmentRecipe> {
        let r = match spec {
            "tutorial" => AugmentRecipe::tutorial(),
            "light" => AugmentRecipe::light(),
            path => {
                let p = std::path::Path::new(path);
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Error::Setting {
                        setting: Setting::Augment,
                        problem: format!("{path}: not `tutorial` or `light`, and cannot read it as a TOML file ({e}); pass one of those names or a readable file"),
                    }
                })?;
                let mut value: toml::Table = toml::from_str(&text).map_err(|e| Error::Setting {
                    setting: Setting::Augment,
                    problem: format!("{path}: not valid TOML ({e}); fix the file"),
                })?;
                if !value.contains_key("name") {
                    let stem = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "custom".into());
                    value.insert("name".into(), toml::Value::String(stem));
                }
                value.try_into().map_err(|e| {
                    Error::Setting {
                        setting: Setting::Augment,
                        problem: format!("{path}: {e}; the keys are scale = [lo, hi], ratio = [lo, hi], flip, and optionally brightness, contrast, saturation, name"),
                    }
                })?
            }
        };
        r.validate()?;
        Ok(r)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(Error::Setting {
                setting: Setting::Augment,
                problem: format!("{}: {m}; fix the recipe", self.name),
            })
        };
        let [s0, s1] = self.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return bad(format!(
                "scale {:?} must satisfy 0 < lo ≤ hi ≤ 1",
                self.scale
            ));
        }
        let [r0, r1] = self.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return bad(format!(
                "ratio {:?} must satisfy 0 < lo ≤ hi < ∞",
                self.ratio
            ));
        }
        if !(0.0..=1.0).contains(&self.flip) {
            return bad(format!(
                "flip {} must be a probability in [0, 1]",
                self.flip
            ));
        }
        for (what, s) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..1.0).contains(&s) {
                return bad(format!("{what} {s} must be in [0, 1)"));
            }
        }
        Ok(())
    }

    fn has_jitter(&self) -> bool {
        self.brightness > 0.0 || self.contrast > 0.0 || self.saturation > 0.0
    }
}

/// The most views per image (`--views K`): tutorials use 5–10; each view is
/// a backbone run and its features are stored ([N, K, D]).
pub(crate) const MAX_VIEWS: usize = 256;

/// A run's views: K per image (K counts the centre view 0), their recipe and seed.
/// Recorded in the feature file's `augment` attribute as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewPlan {
    /// Views per image, the centre view included (≥ 2).
    pub views: usize,
    pub seed: u64,
    pub recipe: AugmentRecipe,
}

impl ViewPlan {
    pub fn validate(&self) -> Result<()> {
        if self.views > MAX_VIEWS {
            return Err(Error::Setting {
                setting: Setting::Views,
                problem: format!(
                    "{} is over xfer's limit of {MAX_VIEWS} views per image (each is a backbone run, and every view's features are stored)",
                    self.views
                ),
            });
        }
        if self.views < 2 {
            return Err(Error::Setting {
                setting: Setting::Views,
                problem: format!(
                    "{} must be at least 2 (view 0 is the centre crop, the others are augmented); leave it out for plain features",
                    self.views
                ),
            });
        }
        self.recipe.validate()
    }

    /// The JSON recorded in feature files and bundles.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a view plan is plain data")
    }

    /// What each view of the image `key` (its path relative to the dataset
    /// root) of size `width × height` gets; `None` for view 0, the centre crop.
    pub(crate) fn ops(&self, key: &str, view: usize, width: u32, height: u32) -> Option<ViewOps> {
        if view == 0 {
            return None;
        }
        let mut rng = view_rng(self.seed, key, view);
        let crop = random_resized_crop(
            &mut rng,
            width,
            height,
            self.recipe.scale,
            self.recipe.ratio,
        );
        let flip = uniform(&mut rng, 0.0, 1.0) < self.recipe.flip;
        let jitter = self.recipe.has_jitter().then(|| {
            let mut factor = |s: f32| uniform(&mut rng, 1.0 - s as f64, 1.0 + s as f64) as f32;
            Jitter {
                brightness: factor(self.recipe.brightness),
                contrast: factor(self.recipe.contrast),
                saturation: factor(self.recipe.saturation),
            }
        });
        Some(ViewOps { crop, flip, jitter })
    }
}

/// The generator of one view: seeded by SHA-256 of the seed (little-endian),
/// the key's bytes, a NUL and the view index (little-endian u64).
fn view_rng(seed: u64, key: &str, view: usize) -> Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(key.as_bytes());
    h.update([0u8]);
    h.update((view as u64).to_le_bytes());
    let d = h.finalize();
    Rng::new(u64::from_le_bytes(d[..8].try_into().expect("8 bytes")))
}

/// Uniform in [lo, hi) with 53 bits.
fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    lo + (hi - lo) * u
}

/// Python's `round` (half to even) of a non-negative value, as an integer.
fn round_half_even(x: f64) -> i64 {
    let r = x.round_ties_even();
    r as i64
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries of an area fraction
/// uniform in `scale` and a log-uniform aspect ratio in `ratio`; the first box
/// that fits is placed uniformly; otherwise the centre crop with the ratio
/// clamped into `ratio`.
pub(crate) fn random_resized_crop(
    rng: &mut Rng,
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
) -> CropBox {
    let area = width as f64 * height as f64;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale[0], scale[1]);
        let aspect = uniform(rng, log_ratio[0], log_ratio[1]).exp();
        let w = round_half_even((target_area * aspect).sqrt());
        let h = round_half_even((target_area / aspect).sqrt());
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            // torch.randint(0, n + 1): uniform over 0..=n
            let top = rng.next_u64() % (height as u64 - h as u64 + 1);
            let left = rng.next_u64() % (width as u64 - w as u64 + 1);
            return CropBox {
                left: left as u32,
                top: top as u32,
                width: w as u32,
                height: h as u32,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (min_r, max_r) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (w, h) = if in_ratio < min_r {
        (width, round_half_even(width as f64 / min_r).max(1) as u32)
    } else if in_ratio > max_r {
        (round_half_even(height as f64 * max_r).max(1) as u32, height)
    } else {
        (width, height)
    };
    let (w, h) = (w.min(width), h.min(height));
    CropBox {
        left: (width - w) / 2,
        top: (height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ViewPlan {
        ViewPlan {
            views: 8,
            seed: 7,
            recipe: AugmentRecipe::tutorial(),
        }
    }

    #[test]
    fn views_are_a_function_of_seed_path_and_index() {
        let p = plan();
        assert_eq!(p.ops("a/1.jpg", 0, 640, 480), None);
        let a = p.ops("a/1.jpg", 3, 640, 480).unwrap();
        assert_eq!(Some(a.clone()), p.ops("a/1.jpg", 3, 640, 480));
        let others = [
            p.ops("a/1.jpg", 4, 640, 480).unwrap(),
            p.ops("a/2.jpg", 3, 640, 480).unwrap(),
            ViewPlan {
                seed: 8,
                ..p.clone()
            }
            .ops("a/1.jpg", 3, 640, 480)
            .unwrap(),
        ];
        for o in others {
            assert_ne!(o.crop, a.crop);
        }
    }

    #[test]
    fn crops_follow_torchvision_ranges() {
        let p = plan();
        let (mut flips, n) = (0, 2000);
        let mut min_frac: f64 = 1.0;
        for v in 1..=n {
            let ops = p.ops("x.png", v, 500, 375).unwrap();
            let c = ops.crop;
            assert!(c.width > 0 && c.height > 0);
            assert!(c.left + c.width <= 500 && c.top + c.height <= 375, "{c:?}");
            let frac = (c.width * c.height) as f64 / (500.0 * 375.0);
            min_frac = min_frac.min(frac);
            // Rounding of w and h moves the area a little outside `scale`.
            assert!(frac > 0.07 && frac <= 1.0, "{frac}");
            let r = c.width as f64 / c.height as f64;
            assert!(r > 0.7 && r < 1.45 || frac > 0.9, "ratio {r}");
            flips += ops.flip as usize;
            assert!(ops.jitter.is_none());
        }
        assert!(min_frac < 0.12, "small crops are drawn ({min_frac})");
        assert!((flips as f64 / n as f64 - 0.5).abs() < 0.05, "{flips}");
    }

    #[test]
    fn fallback_is_the_clamped_centre_crop() {
        // A 1000×10 strip: no box of area ≥ 8 % with ratio ≤ 4/3 fits, so
        // torchvision falls back to the centre, h = height, w = round(h · 4/3).
        let mut rng = Rng::new(1);
        let c = random_resized_crop(&mut rng, 1000, 10, [0.08, 1.0], [0.75, 4.0 / 3.0]);
        assert_eq!(
            c,
            CropBox {
                left: (1000 - 13) / 2,
                top: 0,
                width: 13,
                height: 10
            }
        );
        let c = random_resized_crop(&mut rng, 10, 1000, [0.08, 1.0], [0.75, 4.0 / 3.0]);
        assert_eq!((c.width, c.height, c.top), (10, 13, (1000 - 13) / 2));
    }

    #[test]
    fn recipes_parse_and_bad_ones_are_refused() {
        assert_eq!(
            AugmentRecipe::parse("tutorial").unwrap(),
            AugmentRecipe::tutorial()
        );
        let light = AugmentRecipe::parse("light").unwrap();
        assert!(light.has_jitter());
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("mine.toml");
        std::fs::write(&f, "scale = [0.5, 1.0]\nratio = [0.9, 1.1]\nflip = 0.0\n").unwrap();
        let r = AugmentRecipe::parse(f.to_str().unwrap()).unwrap();
        assert_eq!(
            (r.name.as_str(), r.scale, r.flip),
            ("mine", [0.5, 1.0], 0.0)
        );
        std::fs::write(
            &f,
            "scale = [0.5, 1.0]\nratio = [0.9, 1.1]\nflip = 0.0\nhue = 0.1\n",
        )
        .unwrap();
        let e = AugmentRecipe::parse(f.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("hue") && e.contains("the keys are"), "{e}");
        std::fs::write(&f, "scale = [0.0, 1.0]\nratio = [0.9, 1.1]\nflip = 0.5\n").unwrap();
        let e = AugmentRecipe::parse(f.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("scale") && e.contains("fix the recipe"), "{e}");
        let e = AugmentRecipe::parse("nope").unwrap_err().to_string();
        assert!(e.contains("tutorial") && e.contains("light"), "{e}");
        let bad = ViewPlan { views: 1, ..plan() };
        assert!(bad.validate().is_err());
    }
}
