//! An exclusive lock on an output file, so that two runs never write the same
//! feature file or bundle at once: `<out>.lock` beside it, locked with
//! `flock(LOCK_EX | LOCK_NB)` and holding the holder's pid and command line.
//!
//! - A second locker gets [`Error::Locked`] naming the holder (pid, command) and
//!   what to do.
//! - The lock is released when the [`OutputLock`] drops (the `.lock` file is
//!   removed), and by the kernel when the holder dies, however it dies: a
//!   `.lock` file left behind by a killed process is stale and does not block.
//! - Removing the file on release races with a process that opened it just
//!   before: a locker therefore checks, once it holds the lock, that the file it
//!   locked is still the one at the path, and starts over if not.
//!
//! - The lock file is opened with `O_NOFOLLOW | O_CLOEXEC`: a symbolic link at
//!   `<out>.lock` (planted in a shared folder to make xfer overwrite another
//!   file) is refused with [`Error::Planted`] and left alone, as is anything
//!   but a regular file with one name (a hard link to another file). On
//!   release only the file this process locked is removed (device and inode
//!   compared), never what another program put at the path since.
//!
//! flock locks are per open file description: two `OutputLock`s on one output
//! in the same process also exclude each other.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file of an output: `<out>.lock`.
pub(crate) fn lock_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    output.with_file_name(name)
}

/// This process's command line, arguments separated by spaces.
fn command_line() -> String {
    match fs::read("/proc/self/cmdline") {
        Ok(raw) if !raw.is_empty() => raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        _ => std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Holds the lock on an output until dropped.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
    /// (device, inode) of the locked file.
    id: (u64, u64),
}

/// Refuses a lock path that is not a plain file of its own.
fn planted(path: &Path, m: &fs::Metadata) -> Option<Error> {
    let what = if m.file_type().is_symlink() {
        "a symbolic link"
    } else if !m.file_type().is_file() {
        crate::util::atomic::describe_kind(m)
    } else if m.nlink() > 1 {
        "a hard link to another file"
    } else {
        return None;
    };
    Some(Error::Planted {
        path: path.to_owned(),
        what: what.into(),
        role: "lock file",
    })
}

impl OutputLock {
    /// Locks `output` (which need not exist) or says who holds it.
    pub fn acquire(output: &Path) -> Result<OutputLock> {
        let path = lock_path(output);
        // A few rounds at most: each retry means another process released the
        // lock (and removed the file) between our open and our flock.
        for _ in 0..100 {
            let mut file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) => {
                    // ELOOP: the path is a symbolic link (O_NOFOLLOW).
                    if let Some(p) = fs::symlink_metadata(&path)
                        .ok()
                        .and_then(|m| planted(&path, &m))
                    {
                        return Err(p);
                    }
                    return Err(Error::io(&path, e));
                }
            };
            let ours = file.metadata().map_err(|e| Error::io(&path, e))?;
            if let Some(p) = planted(&path, &ours) {
                return Err(p);
            }
            // SAFETY: flock on a file descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let mut lines = text.lines();
                    let pid = lines.next().unwrap_or("").trim().to_string();
                    let command = lines.next().unwrap_or("").trim().to_string();
                    return Err(Error::Locked {
                        output: output.to_owned(),
                        lock: path,
                        pid: if pid.is_empty() {
                            "unknown".into()
                        } else {
                            pid
                        },
                        command: if command.is_empty() {
                            "starting".into()
                        } else {
                            command
                        },
                    });
                }
                return Err(Error::io(&path, err));
            }
            // Still the file at the path? (Not removed by a holder releasing it.)
            match fs::symlink_metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                _ => continue,
            }
            let write = |file: &mut File| -> std::io::Result<()> {
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                writeln!(file, "{}\n{}", std::process::id(), command_line())?;
                file.flush()
            };
            write(&mut file).map_err(|e| Error::io(&path, e))?;
            return Ok(OutputLock {
                file,
                path,
                id: (ours.dev(), ours.ino()),
            });
        }
        Err(Error::Io {
            path: path.clone(),
            source: std::io::Error::other(
                "the lock file keeps being replaced by other processes; run again",
            ),
        })
    }

    /// The `.lock` file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; lockers that opened the old file
        // see it is gone from the path and start over. Only our own file:
        // whatever else is at the path now is left alone.
        crate::util::atomic::remove_if_same(&self.path, self.id);
        // SAFETY: unlocking our own descriptor; closing it would release it too.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    #[test]
    fn second_locker_is_told_who_holds_it_and_drop_releases() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("f.h5");
        let a = OutputLock::acquire(&out).unwrap();
        assert_eq!(a.path(), t.path().join("f.h5.lock"));
        let content = fs::read_to_string(a.path()).unwrap();
        assert!(
            content.starts_with(&format!("{}\n", std::process::id())),
            "{content}"
        );
        let e = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id()))
                && e.contains("f.h5")
                && e.contains("wait for it to finish"),
            "{e}"
        );
        drop(a);
        assert!(!t.path().join("f.h5.lock").exists());
        let b = OutputLock::acquire(&out).unwrap();
        drop(b);
    }

    #[test]
    fn a_symlink_or_hard_link_at_the_lock_path_is_refused_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim.txt");
        fs::write(&victim, "precious\n").unwrap();
        let out = t.path().join("f.h5");
        std::os::unix::fs::symlink(&victim, lock_path(&out)).unwrap();
        let e = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(
            e.contains("f.h5.lock")
                && e.contains("symbolic link")
                && e.contains("not follow or delete"),
            "{e}"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(fs::symlink_metadata(lock_path(&out))
            .unwrap()
            .file_type()
            .is_symlink());
        // A dangling link: nothing is created at its target.
        let out2 = t.path().join("g.h5");
        let target = t.path().join("made-through-link");
        std::os::unix::fs::symlink(&target, lock_path(&out2)).unwrap();
        assert!(OutputLock::acquire(&out2).is_err());
        assert!(!target.exists());
        // A hard link to another file.
        let out3 = t.path().join("h.h5");
        fs::hard_link(&victim, lock_path(&out3)).unwrap();
        let e = OutputLock::acquire(&out3).unwrap_err().to_string();
        assert!(e.contains("hard link"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn release_leaves_a_file_put_at_the_path_since() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("f.h5");
        let l = OutputLock::acquire(&out).unwrap();
        fs::remove_file(lock_path(&out)).unwrap();
        fs::write(lock_path(&out), "someone else's\n").unwrap();
        drop(l);
        assert_eq!(
            fs::read_to_string(lock_path(&out)).unwrap(),
            "someone else's\n"
        );
    }

    #[test]
    fn stale_lock_file_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("head.safetensors");
        fs::write(lock_path(&out), "999999\nxfer train (long dead)\n").unwrap();
        let l = OutputLock::acquire(&out).unwrap();
        let content = fs::read_to_string(l.path()).unwrap();
        assert!(!content.contains("long dead"), "{content}");
    }

    #[test]
    fn lock_held_by_flock_1_names_it_and_frees_when_it_is_killed() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("f.h5");
        let lock = lock_path(&out);
        fs::write(&lock, "").unwrap();
        // flock(1) holds the lock while `sleep` runs, in a process group of its own.
        let mut child = match Command::new("flock")
            .arg(&lock)
            .args(["sh", "-c", "echo held; exec sleep 60"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping: flock(1) not available ({e})");
                return;
            }
        };
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "held\n");
        let e = OutputLock::acquire(&out).unwrap_err().to_string();
        // flock(1) writes nothing in the file: the holder is unknown but reported.
        assert!(e.contains("another xfer process (pid unknown"), "{e}");
        // Kill flock and its sleeping child (which inherited the locked descriptor).
        // SAFETY: signalling the process group this test created.
        assert_eq!(
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) },
            0
        );
        child.wait().unwrap();
        // The sleep is reaped by init; until then its descriptor may hold the lock.
        let mut free = false;
        for _ in 0..100 {
            if OutputLock::acquire(&out).is_ok() {
                free = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(free, "the lock stayed held after its holders were killed");
    }

    /// Run by `lock_held_by_a_killed_process_is_free_again` in a child process.
    #[test]
    #[ignore = "helper: run by another test in a child process"]
    fn child_holds_a_lock() {
        let Some(out) = std::env::var_os("XFER_TEST_LOCK_OUTPUT") else {
            return;
        };
        let _lock = OutputLock::acquire(Path::new(&out)).unwrap();
        // libtest prints "test … ... " without a newline first: a marker, not a line.
        println!("XFER-TEST-LOCKED");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(30));
    }

    #[test]
    fn lock_held_by_a_killed_process_is_free_again() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("f.h5");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "util::lock::tests::child_holds_a_lock",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("XFER_TEST_LOCK_OUTPUT", &out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("the child process ended without taking the lock");
            }
            if line.contains("XFER-TEST-LOCKED") {
                break;
            }
        }
        let e = OutputLock::acquire(&out).unwrap_err();
        match &e {
            Error::Locked { pid, command, .. } => {
                assert_eq!(pid, &child.id().to_string());
                assert!(command.contains("child_holds_a_lock"), "{command}");
            }
            other => panic!("{other}"),
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Killed: the kernel released the flock; the stale file does not block.
        assert!(lock_path(&out).exists());
        let l = OutputLock::acquire(&out).unwrap();
        let content = fs::read_to_string(l.path()).unwrap();
        assert!(
            content.starts_with(&format!("{}\n", std::process::id())),
            "{content}"
        );
    }
}
