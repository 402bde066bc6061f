//! Issue #14, a full disk: a real `tongban node run` whose data directory is on
//! a small tmpfs that fills up and empties again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::daemon::{NodeProcess, case_new as new_case, offices, ok};
use crate::support::stderr;

/// A tmpfs mounted for the test, unmounted when dropped (also when the test
/// fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `dir`;
    /// answers why not when it cannot (not root, no mount command).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so that a node process a failed test left behind does not
        // keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A node killed when dropped, so that a failing test leaves no process.
struct Running(Option<NodeProcess>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut node) = self.0.take() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn status(data: &Path, auth: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(Some(data), auth, &["node", "status", "--json"])).unwrap()
}

fn case_count(data: &Path, auth: &Path) -> usize {
    let out = ok(Some(data), auth, &["case", "list", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_resumes_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    let mount = match Tmpfs::mount(&disk, "24m") {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let auth = offices(&disk, &[("440106001", "township", "440106001")]);
    let data = disk.join("440106001");
    let mut node = Running(Some(NodeProcess::start(&disk, "440106001", None)));
    let out = new_case(&data, &auth, 1);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Fill the disk.
    let filler = disk.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
    }
    // Writes are refused with a clear error naming the disk (the first one to
    // fail may have found a little room left inside the database file).
    let mut n = 2;
    let refused = loop {
        let out = new_case(&data, &auth, n);
        n += 1;
        if out.status.code() != Some(0) {
            break out;
        }
        assert!(n < 20, "writes kept succeeding on a full disk");
    };
    assert_eq!(refused.status.code(), Some(1));
    let said = stderr(&refused);
    assert!(said.contains(data.to_str().unwrap()), "{said}");
    assert!(
        said.contains("full") || said.contains("cannot write"),
        "{said}"
    );
    eprintln!("refused with: {said}");
    let before = case_count(&data, &auth);
    // A second write is refused too, in Chinese and English.
    let out = new_case(&data, &auth, 50);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("磁盘"), "{}", stderr(&out));
    // Reads and status go on, and status says what is wrong.
    let st = status(&data, &auth);
    assert_eq!(st["running"], true, "{st}");
    assert!(st["store_error"].is_string(), "{st}");
    eprintln!("status while full: {}", st["store_error"]);
    assert_eq!(case_count(&data, &auth), before);
    let text = ok(Some(&data), &auth, &["node", "status"]);
    assert!(text.contains("存储暂停写入"), "{text}");

    // Space returns: writes resume without a restart.
    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    loop {
        let out = new_case(&data, &auth, 60);
        if out.status.code() == Some(0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "writes did not resume: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("writes resumed {:?} after space returned", start.elapsed());
    assert_eq!(case_count(&data, &auth), before + 1);
    assert!(status(&data, &auth)["store_error"].is_null());
    assert_eq!(node.0.take().unwrap().terminate(), 0);
    drop(mount);
}
