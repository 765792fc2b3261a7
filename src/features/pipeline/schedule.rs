//! How the pipeline shares the CPU with ONNX Runtime: decoder priority and
//! whether ONNX Runtime's threads spin.
//!
//! Measured on 2 cores when this was built (not re-measured since): decoders at `SCHED_IDLE`
//! while the backbone is busy fill the gaps of ONNX Runtime's thread pool
//! instead of slowing its threads (~10 % faster end to end); spinning helps
//! when images are small files (cheap to decode) and hurts on large photos,
//! whose decoders need the time spinning would burn.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Files up to this mean size decode in a small fraction of a backbone's time.
pub(crate) const SMALL_FILE_BYTES: u64 = 256 * 1024;

/// Whether ONNX Runtime's threads should spin for these inputs: yes when the
/// first 64 files are small on average (see [`SMALL_FILE_BYTES`]).
pub(crate) fn spin_suits(paths: &[PathBuf]) -> bool {
    let sizes: Vec<u64> = paths
        .iter()
        .take(64)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .collect();
    !sizes.is_empty() && sizes.iter().sum::<u64>() / (sizes.len() as u64) <= SMALL_FILE_BYTES
}

/// `--ort-spin auto`: spin only when the model runs on the CPU and
/// [`spin_suits`] the inputs. On a GPU, ONNX Runtime's CPU threads only wait for
/// the device: spinning would take cores from the decoders and gain nothing.
pub fn auto_spin(device: crate::models::runtime::Device, paths: &[PathBuf]) -> bool {
    device == crate::models::runtime::Device::Cpu && spin_suits(paths)
}

/// The decoders' scheduling priority: `SCHED_IDLE` while the backbone is busy,
/// normal while it waits for decoded images. The consumer sets
/// `backbone_waiting`; each decoder thread adjusts its own policy before every
/// image (a syscall only when the wanted policy changed).
pub(crate) struct DecoderPriority {
    /// The caller allows it and a thread can leave `SCHED_IDLE` again.
    allowed: bool,
    /// Allowed, and the backbones run on the CPU (known once they are loaded).
    enabled: AtomicBool,
    backbone_waiting: AtomicBool,
}

impl DecoderPriority {
    pub(crate) fn new(wanted: bool) -> Self {
        DecoderPriority {
            allowed: wanted && idle_round_trip_allowed(),
            enabled: AtomicBool::new(false),
            backbone_waiting: AtomicBool::new(true),
        }
    }

    /// `SCHED_IDLE` decoders only make sense when they share the CPU with the backbones.
    pub(crate) fn enable(&self, backbones_on_cpu: bool) {
        self.enabled
            .store(self.allowed && backbones_on_cpu, Ordering::Relaxed);
    }

    pub(crate) fn set_backbone_waiting(&self, waiting: bool) {
        self.backbone_waiting.store(waiting, Ordering::Relaxed);
    }

    /// Called on a decoder thread before each image.
    pub(crate) fn apply(&self) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        thread_local! {
            static IDLE: Cell<bool> = const { Cell::new(false) };
        }
        let want_idle = !self.backbone_waiting.load(Ordering::Relaxed);
        if IDLE.with(|c| c.get()) != want_idle && set_idle_priority(want_idle) {
            IDLE.with(|c| c.set(want_idle));
        }
    }
}

/// Moves the calling thread to `SCHED_IDLE` or back to normal scheduling
/// (`SCHED_OTHER`, nice unchanged). Returns whether the OS agreed.
fn set_idle_priority(idle: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let param = libc::sched_param { sched_priority: 0 };
        // pid 0: the calling thread (Linux schedules threads individually).
        unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = idle;
        false
    }
}

/// Whether a thread can go to `SCHED_IDLE` and come back. Leaving `SCHED_IDLE`
/// needs root or a permissive `RLIMIT_NICE`; without it a decoder would stay
/// starved for good, so the policy is used only where the round trip works
/// (tried on a throwaway thread).
fn idle_round_trip_allowed() -> bool {
    std::thread::spawn(|| set_idle_priority(true) && set_idle_priority(false))
        .join()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_follows_the_mean_file_size() {
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, len: usize| {
            let p = t.path().join(name);
            std::fs::write(&p, vec![0u8; len]).unwrap();
            p
        };
        let mut paths = vec![write("1.jpg", 40_000), write("2.jpg", 60_000)];
        assert!(spin_suits(&paths));
        paths.push(write("3.jpg", 3_000_000));
        assert!(!spin_suits(&paths));
        assert!(!spin_suits(&[]));
    }

    #[test]
    fn auto_never_spins_on_a_gpu() {
        use crate::models::runtime::Device;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("small.jpg");
        std::fs::write(&p, vec![0u8; 10_000]).unwrap();
        let paths = vec![p];
        assert!(auto_spin(Device::Cpu, &paths));
        assert!(!auto_spin(Device::Cuda, &paths));
        assert!(!auto_spin(Device::Tensorrt, &paths));
    }
}
