//! The CPU's int8 instructions, and what they mean for int8 models.
//!
//! ONNX Runtime's int8 convolutions and matrix products (u8 activations × s8
//! weights) use a dot-product instruction where the CPU has one (AVX-512 VNNI,
//! AVX-VNNI, AMX-INT8). Without them, on AVX2, it multiplies pairs with
//! `vpmaddubsw`, whose 16-bit sums saturate: a model quantised with full 8-bit
//! weights can then give other features than where it was calibrated.
//! ONNX Runtime's `reduce_range` (7-bit weights, `xfer quantize --reduce-range`)
//! avoids the saturation.

use crate::models::zoo::Quantization;

/// The int8-relevant instructions of a CPU (from `/proc/cpuinfo` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Int8Support {
    /// `/proc/cpuinfo` could be read (else nothing is known).
    pub known: bool,
    pub(crate) avx2: bool,
    pub(crate) avx512_vnni: bool,
    pub(crate) avx_vnni: bool,
    pub(crate) amx_int8: bool,
}

impl Int8Support {
    /// Reads this machine's flags (Linux: the first `flags` line of
    /// `/proc/cpuinfo`); on other systems nothing is known.
    pub fn detect() -> Int8Support {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("flags"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, flags)| Int8Support::from_flags(flags))
            })
            .unwrap_or_default()
    }

    /// From a whitespace-separated flag list as in `/proc/cpuinfo`.
    pub(crate) fn from_flags(flags: &str) -> Int8Support {
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        Int8Support {
            known: true,
            avx2: has("avx2"),
            avx512_vnni: has("avx512_vnni"),
            avx_vnni: has("avx_vnni"),
            amx_int8: has("amx_int8"),
        }
    }

    /// Whether the CPU has an int8 dot-product instruction.
    pub fn has_dot_product(&self) -> bool {
        self.avx512_vnni || self.avx_vnni || self.amx_int8
    }

    /// "AVX-512 VNNI, AMX-INT8", or "none of AVX-512 VNNI, AVX-VNNI, AMX-INT8 (AVX2 only)".
    pub fn describe(&self) -> String {
        if !self.known {
            return "unknown (no /proc/cpuinfo)".into();
        }
        let names: Vec<&str> = [
            (self.avx512_vnni, "AVX-512 VNNI"),
            (self.avx_vnni, "AVX-VNNI"),
            (self.amx_int8, "AMX-INT8"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            format!(
                "none of AVX-512 VNNI, AVX-VNNI, AMX-INT8 ({})",
                if self.avx2 { "AVX2 only" } else { "no AVX2" }
            )
        } else {
            names.join(", ")
        }
    }
}

/// The warning for running the int8 model `name` (made as `q` records) on a
/// CPU with `cpu`'s instructions, or `None` when there is nothing to warn of:
/// the CPU has an int8 dot-product instruction, the model has 7-bit weights
/// (`reduce_range`), or nothing is known of the CPU.
pub fn int8_warning(name: &str, q: &Quantization, cpu: &Int8Support) -> Option<String> {
    if !cpu.known || cpu.has_dot_product() || q.reduce_range {
        return None;
    }
    let measured = match &q.agreement {
        Some(a) => format!(
            "its agreement report (feature cosine mean {:.4}, min {:.4} on {} held-back images) was measured on a CPU with {}",
            a.cosine_mean,
            a.cosine_min,
            a.images,
            if q.cpu_int8.is_empty() {
                "unrecorded int8 instructions"
            } else {
                &q.cpu_int8
            }
        ),
        None => "it has no agreement report".into(),
    };
    Some(format!(
        "{name} is an int8 model with 8-bit weights, and this CPU has {}: ONNX Runtime's int8 path here can saturate, so features may differ from where the model was calibrated ({measured}); to be safe, quantise with 7-bit weights (reduce_range) on such CPUs and check the agreement report",
        cpu.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(reduce_range: bool) -> Quantization {
        Quantization {
            precision: "int8".into(),
            format: "qdq".into(),
            weights: "int8".into(),
            activations: "uint8".into(),
            per_channel: true,
            reduce_range,
            method: "minmax".into(),
            source: "m".into(),
            source_sha256: "00".into(),
            calibration_images: 16,
            calibration_sha256: "11".into(),
            calibration_root: String::new(),
            ort_version: "1.31.1".into(),
            cpu_int8: "AVX-512 VNNI".into(),
            xfer_version: String::new(),
            agreement: None,
        }
    }

    // Flag lines as /proc/cpuinfo prints them (shortened).
    const EPYC_AVX2: &str = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes";
    const SAPPHIRE: &str =
        "avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8";
    const ALDER: &str = "avx2 avx_vnni";
    const CASCADE: &str = "avx2 avx512f avx512_vnni";
    // Names that contain a wanted flag as a substring must not count.
    const LOOKALIKE: &str = "avx2 avx512_vnnix xamx_int8 avx_vnni_int8";

    #[test]
    fn reads_the_int8_instructions_from_flags() {
        let c = Int8Support::from_flags(EPYC_AVX2);
        assert!(c.known && c.avx2 && !c.has_dot_product());
        assert_eq!(
            c.describe(),
            "none of AVX-512 VNNI, AVX-VNNI, AMX-INT8 (AVX2 only)"
        );
        let s = Int8Support::from_flags(SAPPHIRE);
        assert!(s.avx512_vnni && s.amx_int8 && !s.avx_vnni);
        assert_eq!(s.describe(), "AVX-512 VNNI, AMX-INT8");
        assert_eq!(Int8Support::from_flags(ALDER).describe(), "AVX-VNNI");
        assert!(Int8Support::from_flags(CASCADE).has_dot_product());
        assert!(!Int8Support::from_flags(LOOKALIKE).has_dot_product());
        assert!(!Int8Support::default().known);
    }

    #[test]
    fn warns_only_for_8_bit_weights_without_a_dot_product() {
        let avx2 = Int8Support::from_flags(EPYC_AVX2);
        let w = int8_warning("lite0_int8", &q(false), &avx2).expect("AVX2 only, 8-bit weights");
        assert!(w.contains("lite0_int8") && w.contains("AVX2 only"), "{w}");
        assert!(w.contains("reduce_range") && !w.contains("--"), "{w}");
        assert!(w.contains("no agreement report"), "{w}");
        // 7-bit weights do not saturate.
        assert_eq!(int8_warning("m", &q(true), &avx2), None);
        // Any dot-product instruction: ONNX Runtime's exact path.
        for flags in [SAPPHIRE, ALDER, CASCADE] {
            assert_eq!(
                int8_warning("m", &q(false), &Int8Support::from_flags(flags)),
                None,
                "{flags}"
            );
        }
        assert!(int8_warning("m", &q(false), &Int8Support::from_flags(LOOKALIKE)).is_some());
        // Nothing known: no guess.
        assert_eq!(int8_warning("m", &q(false), &Int8Support::default()), None);
        // The report is quoted with the CPU that measured it.
        let mut with = q(false);
        with.agreement = Some(crate::models::zoo::Agreement {
            images: 12,
            cosine_mean: 0.98,
            cosine_min: 0.9,
            cosine_p5: 0.91,
            top1_agreement: None,
        });
        let w = int8_warning("m", &with, &avx2).unwrap();
        assert!(
            w.contains("0.9800") && w.contains("12 held-back") && w.contains("AVX-512 VNNI"),
            "{w}"
        );
    }
}
