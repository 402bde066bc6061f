//! The Debian package (`[package.metadata.deb]` in node/Cargo.toml,
//! `node/debian/`): the systemd unit runs the installed binary as the `tongban`
//! user on the shipped configuration, which the node itself accepts; the
//! maintainer script creates the user and the directories. Where `cargo deb`
//! is installed the .deb is built from the tested binary and inspected with
//! `dpkg-deb`; where `systemd-analyze` is, it verifies the unit. Each of the
//! two says when it is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tongban_node::daemon::NodeConfig;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `[section] key=value` lines of a systemd unit, every value of each key.
fn parse_unit(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value in [{section}]: {line}"));
        out.entry((section.clone(), key.trim().to_string()))
            .or_default()
            .push(value.trim().to_string());
    }
    out
}

fn one<'a>(unit: &'a BTreeMap<(String, String), Vec<String>>, section: &str, key: &str) -> &'a str {
    let values = unit
        .get(&(section.to_string(), key.to_string()))
        .unwrap_or_else(|| panic!("[{section}] {key} missing"));
    assert_eq!(values.len(), 1, "[{section}] {key}: {values:?}");
    &values[0]
}

fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = std::fs::read_to_string(node_dir().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .unwrap()
        .clone()
}

/// (source, destination, mode) of every asset.
fn assets(deb: &toml::Table) -> Vec<(String, String, String)> {
    deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let s = |i: usize| a[i].as_str().unwrap().to_string();
            (s(0), s(1), s(2))
        })
        .collect()
}

#[test]
fn the_unit_runs_the_installed_binary_as_its_own_user_on_the_shipped_configuration() {
    let deb = deb_metadata();
    let unit_text =
        std::fs::read_to_string(node_dir().join("debian/tongban-node.service")).unwrap();
    let unit = parse_unit(&unit_text);

    // The binary is installed where the unit runs it.
    let assets = assets(&deb);
    let binary = assets
        .iter()
        .find(|(source, ..)| source == "target/release/tongban")
        .expect("the binary is an asset");
    assert_eq!((binary.1.as_str(), binary.2.as_str()), ("usr/bin/", "755"));
    let exec: Vec<&str> = one(&unit, "Service", "ExecStart")
        .split_whitespace()
        .collect();
    assert_eq!(
        exec,
        [
            "/usr/bin/tongban",
            "node",
            "run",
            "--config",
            "/etc/tongban/tongban.toml"
        ]
    );

    // Its own user, its data directory private to it, stopped by SIGTERM.
    assert_eq!(one(&unit, "Service", "User"), "tongban");
    assert_eq!(one(&unit, "Service", "Group"), "tongban");
    assert_eq!(one(&unit, "Service", "StateDirectory"), "tongban");
    assert_eq!(one(&unit, "Service", "StateDirectoryMode"), "0700");
    assert_eq!(one(&unit, "Service", "KillSignal"), "SIGTERM");
    assert_eq!(
        one(&unit, "Service", "Environment"),
        "TONGBAN_DATA_DIR=/var/lib/tongban"
    );
    assert_eq!(
        one(&unit, "Unit", "ConditionPathExists"),
        "/etc/tongban/tongban.toml"
    );
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");

    // The configuration the unit names is shipped there, and the node takes it:
    // its data directory is the unit's state directory.
    let config = assets
        .iter()
        .find(|(_, dest, _)| dest == "etc/tongban/tongban.toml")
        .expect("the configuration is an asset");
    let config_path = node_dir().join(&config.0);
    let loaded = NodeConfig::load(&config_path).unwrap();
    assert_eq!(loaded.data_dir, Path::new("/var/lib/tongban"));
    assert!(loaded.upstream.is_empty() && loaded.listen.is_none());
    assert!(
        deb["conf-files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str() == Some("/etc/tongban/tongban.toml"))
    );

    // Installed, neither enabled nor started: the node needs its key first.
    let units = deb["systemd-units"].as_table().unwrap();
    assert_eq!(units["unit-name"].as_str(), Some("tongban-node"));
    assert_eq!(units["enable"].as_bool(), Some(false));
    assert_eq!(units["start"].as_bool(), Some(false));
    assert_eq!(deb["maintainer-scripts"].as_str(), Some("debian/"));
    assert!(deb["depends"].as_str().unwrap().contains("adduser"));
    // Every asset exists (relative to the package, as cargo-deb reads them).
    for (source, ..) in &assets {
        if source != "target/release/tongban" {
            assert!(node_dir().join(source).is_file(), "{source}");
        }
    }
}

#[test]
fn the_maintainer_script_creates_the_user_and_the_private_data_directory() {
    let postinst = node_dir().join("debian/postinst");
    let text = std::fs::read_to_string(&postinst).unwrap();
    assert!(
        text.contains("adduser --system --ingroup tongban"),
        "{text}"
    );
    assert!(text.contains("/usr/sbin/nologin"), "{text}");
    assert!(
        text.contains("install -d -o tongban -g tongban -m 0700 /var/lib/tongban"),
        "{text}"
    );
    assert!(
        text.contains("#DEBHELPER#"),
        "cargo-deb inserts the systemd part there"
    );
    for script in ["postinst", "postrm"] {
        let path = node_dir().join("debian").join(script);
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "{script} is executable");
        }
        // Data is never deleted by a maintainer script.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("rm -r"), "{script}");
    }
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !have("systemd-analyze", "--version") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // The unit as installed, with ExecStart pointing at the binary under test
    // (systemd-analyze checks that the program exists and is executable).
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(node_dir().join("debian/tongban-node.service"))
        .unwrap()
        .replace("/usr/bin/tongban", env!("CARGO_BIN_EXE_tongban"));
    let unit = tmp.path().join("tongban-node.service");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about other units of the host (its own configuration) are not
    // ours; every line about this unit is.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tongban-node"))
        .collect();
    assert!(ours.is_empty(), "{stderr}");
}

#[test]
fn cargo_deb_builds_a_package_with_the_unit_the_binary_and_the_scripts() {
    let cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_deb {
        eprintln!("skipped: cargo-deb is not installed (cargo install cargo-deb)");
        return;
    }
    if !have("dpkg-deb", "--version") {
        eprintln!("skipped: dpkg-deb is not installed");
        return;
    }
    // The package of the binary under test: cargo-deb takes it from the
    // target directory's release/ (no build, no strip), in a temporary
    // target directory so that nothing of the developer's is touched.
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_tongban"), release.join("tongban")).unwrap();
    let deb = tmp.path().join("tongban.deb");
    let out = Command::new("cargo")
        .args([
            "deb",
            "-p",
            "tongban",
            "--no-build",
            "--no-strip",
            // The debug binary is large: fast compression keeps this test short.
            "--fast",
            "--output",
        ])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", tmp.path())
        .current_dir(node_dir().join(".."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let contents = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(contents.status.success());
    let contents = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/tongban",
        "./etc/tongban/tongban.toml",
        "/systemd/system/tongban-node.service",
        "./usr/share/doc/tongban/install.md",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }
    let binary = contents
        .lines()
        .find(|l| l.ends_with("./usr/bin/tongban"))
        .unwrap();
    // Executable, owned by root (cargo-deb writes the owner as 0/0).
    let mut fields = binary.split_whitespace();
    assert_eq!(fields.next(), Some("-rwxr-xr-x"), "{binary}");
    assert!(
        matches!(fields.next(), Some("0/0" | "root/root")),
        "{binary}"
    );

    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: tongban"), "{info}");
    assert!(info.contains("adduser"), "{info}");
    assert!(info.contains("conffiles"), "{info}");

    // The maintainer scripts as packed: ours, with cargo-deb's systemd part
    // inserted, and the unit not enabled on install.
    let control = tmp.path().join("control");
    let unpacked = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&control)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    assert!(postinst.contains("tongban-node.service"), "{postinst}");
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/tongban/tongban.toml"),
        "{conffiles}"
    );
}
