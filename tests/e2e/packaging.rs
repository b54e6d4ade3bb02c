//! Packages (`scripts/package.sh`) and the service (`datakit service`): the release tarball
//! and its signature, the deb through install / upgrade / remove / purge and the rpm, both in
//! scratch roots, the unit through `systemd-analyze verify`, the first start of the installed
//! binary, and the systemctl calls of `datakit service`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{bin, read_local_points, try_request, wait_for};
use dk_proto::testing::{require_program, require_root};

/// `scripts/package.sh --bin <the binary under test> --compress fast --out OUT ...`.
fn package(out: &Path, version: &str, formats: &str, key: Option<&Path>) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package.sh");
    let mut cmd = Command::new(script);
    cmd.args(["--bin", bin(), "--compress", "fast", "--formats", formats])
        .args(["--version", version])
        .arg("--out")
        .arg(out);
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "package.sh failed: {}", text(&o));
    out.to_path_buf()
}

fn text(o: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    o
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What `<binary> version` reports: `datakit X.Y.Z (build ...)`.
fn reported_version(binary: &Path) -> String {
    let o = run(Command::new(binary).arg("version"));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// An empty dpkg database in `root`, so `dpkg --root` can install there.
fn dpkg_root(root: &Path) {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
}

/// `dpkg --root ROOT` with the maintainer scripts run outside a chroot (they honour DPKG_ROOT).
fn dpkg(root: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args);
    run(&mut cmd)
}

fn dpkg_status(root: &Path) -> String {
    let o = Command::new("dpkg-query")
        .arg(format!("--admindir={}/var/lib/dpkg", root.display()))
        .args(["-W", "-f=${Status} ${Version}", "datakit"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn package_sh_stamps_the_version_and_signs_a_tarball_that_fails_to_verify_after_one_byte_flipped() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    run(Command::new(bin()).args(["tool", "--keygen"]).arg(&keys));
    let out = package(
        &dir.path().join("out"),
        "9.8.7",
        "tar",
        Some(&keys.join("datakit.key")),
    );

    let tarball = format!("datakit-linux-{}-9.8.7.tar.gz", goarch());
    let bytes = std::fs::read(out.join(&tarball)).unwrap();
    let version: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("version")).unwrap()).unwrap();
    assert_eq!(version["version"], "9.8.7");
    assert_eq!(version["tarball"], tarball.as_str());
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(version["sha256"], sha.as_str());
    let build = String::from_utf8_lossy(&run(Command::new(bin()).arg("version")).stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        build.ends_with(&format!("(build {})", version["commit"].as_str().unwrap())),
        "commit {} is not the build id in {build}",
        version["commit"]
    );

    // The detached signature verifies with the public key, and not once one byte changed.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let public = b64
        .decode(
            std::fs::read_to_string(keys.join("datakit.pub"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let sig = b64
        .decode(
            std::fs::read_to_string(out.join(format!("{tarball}.sig")))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public);
    assert!(
        key.verify(&bytes, &sig).is_ok(),
        "the signature must verify"
    );
    let mut tampered = bytes;
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    assert!(
        key.verify(&tampered, &sig).is_err(),
        "a flipped byte must not verify"
    );

    // Layout: the stamped binary (0755) at the root and the samples under conf.d/samples/.
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(Command::new("tar")
        .arg("xzf")
        .arg(out.join(&tarball))
        .arg("-C")
        .arg(&x));
    let mode = std::fs::metadata(x.join("datakit"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(reported_version(&x.join("datakit")), "9.8.7");
    let listing = String::from_utf8_lossy(
        &run(Command::new("tar").arg("tzf").arg(out.join(&tarball))).stdout,
    )
    .to_string();
    for entry in [
        "datakit",
        "conf.d/samples/datakit.conf",
        "conf.d/samples/host/cpu.conf",
        "conf.d/samples/statsd/statsd.conf",
    ] {
        assert!(
            listing.lines().any(|l| l == entry),
            "{entry} missing:\n{listing}"
        );
    }
}

#[test]
fn package_sh_refuses_a_version_that_is_not_x_y_z_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package.sh");
    let o = Command::new(script)
        .args([
            "--bin",
            bin(),
            "--formats",
            "tar",
            "--version",
            "1.2; rm -rf /",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--version must look like X.Y.Z"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_deb_installs_upgrades_keeping_edited_config_removes_keeping_it_and_purges_everything() {
    let dir = tempfile::tempdir().unwrap();
    let out_a = package(&dir.path().join("a"), "9.0.0", "deb", None);
    let out_b = package(&dir.path().join("b"), "9.0.1", "deb", None);
    let deb_a = out_a.join(format!("datakit_9.0.0_{}.deb", goarch()));
    let deb_b = out_b.join(format!("datakit_9.0.1_{}.deb", goarch()));
    let root = dir.path().join("root");
    dpkg_root(&root);
    let dk = root.join("usr/local/datakit");

    // The package needs the newest glibc symbol version the binary uses.
    let depends = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb_a)
        .arg("Depends"));
    let binary = std::fs::read(bin()).unwrap();
    let newest = (0..binary.len().saturating_sub(8))
        .filter(|&i| binary[i..].starts_with(b"GLIBC_2."))
        .filter_map(|i| {
            let digits: String = binary[i + 8..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| char::from(b))
                .collect();
            digits.parse::<u32>().ok()
        })
        .max()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&depends.stdout).trim(),
        format!("libc6 (>= 2.{newest})")
    );

    dpkg(&root, &["-i".as_ref(), deb_a.as_os_str()]);
    assert_eq!(dpkg_status(&root), "install ok installed 9.0.0");
    assert_eq!(reported_version(&dk.join("datakit")), "9.0.0");
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/datakit")).unwrap(),
        Path::new("../local/datakit/datakit")
    );
    for d in ["data", "cache", "conf.d/samples/host"] {
        assert!(dk.join(d).is_dir(), "{d} missing");
    }
    assert!(root.join("var/log/datakit").is_dir());
    assert!(root.join("lib/systemd/system/datakit.service").is_file());

    // The operator's config (written by the agent or by hand) and data the upgrader staged.
    let main = "# edited by the operator\ndefault_enabled_inputs = [\"cpu\"]\n";
    let cpu = "[[inputs.cpu]]\n  interval = '20s'\n";
    std::fs::write(dk.join("conf.d/datakit.conf"), main).unwrap();
    std::fs::create_dir_all(dk.join("conf.d/host")).unwrap();
    std::fs::write(dk.join("conf.d/host/cpu.conf"), cpu).unwrap();
    std::fs::write(dk.join("data/queued.bin"), b"queued").unwrap();
    std::fs::write(root.join("var/log/datakit/log"), b"a log line\n").unwrap();

    dpkg(&root, &["-i".as_ref(), deb_b.as_os_str()]);
    assert_eq!(dpkg_status(&root), "install ok installed 9.0.1");
    assert_eq!(reported_version(&dk.join("datakit")), "9.0.1");
    assert_datakit_files_kept(&dk, main, cpu);

    // A binary the remote upgrader kept for a rollback is not the package's.
    std::fs::copy(dk.join("datakit"), dk.join("datakit.prev")).unwrap();
    dpkg(&root, &["-r".as_ref(), "datakit".as_ref()]);
    assert_eq!(dpkg_status(&root), "deinstall ok config-files 9.0.1");
    assert!(!dk.join("datakit").exists(), "remove deletes the binary");
    assert!(
        !dk.join("conf.d/samples").exists(),
        "remove deletes the samples"
    );
    assert!(!root.join("usr/bin/datakit").exists());
    assert_datakit_files_kept(&dk, main, cpu);
    assert!(root.join("var/log/datakit/log").exists());

    dpkg(&root, &["-P".as_ref(), "datakit".as_ref()]);
    assert_eq!(dpkg_status(&root), "");
    assert!(!dk.exists(), "purge deletes the work dir");
    assert!(
        !root.join("var/log/datakit").exists(),
        "purge deletes the logs"
    );
}

/// The Datakit config and unsent data the over-install test put in `dk` are still as written.
fn assert_datakit_files_kept(dk: &Path, main: &str, cpu: &str) {
    assert_eq!(
        std::fs::read_to_string(dk.join("conf.d/datakit.conf")).unwrap(),
        main
    );
    assert_eq!(
        std::fs::read_to_string(dk.join("conf.d/host/cpu.conf")).unwrap(),
        cpu
    );
    assert_eq!(
        std::fs::read(dk.join("data/queued.bin")).unwrap(),
        b"queued"
    );
}

#[test]
fn the_rpm_installs_into_a_scratch_root_and_erasing_it_keeps_the_operators_config() {
    if !require_program("rpmbuild", "rpm") || !require_program("rpm", "rpm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = package(&dir.path().join("out"), "9.1.0", "rpm", None);
    let rpm = out.join(format!("datakit-9.1.0-1.{}.rpm", std::env::consts::ARCH));
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // The scriptlets would run in a chroot without a shell; they only talk to systemd.
    run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--nodeps", "--noscripts", "-i"])
        .arg(&rpm));
    let q = run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["-q", "datakit"]));
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).trim(),
        format!("datakit-9.1.0-1.{}", std::env::consts::ARCH)
    );
    let dk = root.join("usr/local/datakit");
    assert_eq!(reported_version(&dk.join("datakit")), "9.1.0");
    assert!(dk.join("conf.d/samples/host/cpu.conf").is_file());
    assert!(dk.join("data").is_dir() && dk.join("cache").is_dir());
    assert!(
        root.join("usr/lib/systemd/system/datakit.service")
            .is_file()
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/datakit")).unwrap(),
        Path::new("../local/datakit/datakit")
    );
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm));
    assert!(
        String::from_utf8_lossy(&scripts.stdout).contains("systemctl enable datakit.service"),
        "the rpm enables the service"
    );

    std::fs::write(dk.join("conf.d/datakit.conf"), "# mine\n").unwrap();
    run(Command::new("rpm").arg("--root").arg(&root).args([
        "--nodeps",
        "--noscripts",
        "-e",
        "datakit",
    ]));
    assert!(!dk.join("datakit").exists());
    assert_eq!(
        std::fs::read_to_string(dk.join("conf.d/datakit.conf")).unwrap(),
        "# mine\n"
    );
}

/// Installs the deb of the binary under test (version 9.2.0) into `root`.
fn install_deb(dir: &Path, root: &Path) {
    let out = package(&dir.join("out"), "9.2.0", "deb", None);
    dpkg_root(root);
    let deb = out.join(format!("datakit_9.2.0_{}.deb", goarch()));
    dpkg(root, &["-i".as_ref(), deb.as_os_str()]);
}

#[test]
fn systemd_analyze_accepts_the_packaged_unit_with_datakits_restart_policy_and_hardening() {
    if !require_program("systemd-analyze", "systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install_deb(dir.path(), &root);
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/datakit.service")).unwrap();
    for line in [
        "ExecStartPre=/usr/local/datakit/datakit check --config --workdir /usr/local/datakit",
        "ExecStart=/usr/local/datakit/datakit run --workdir /usr/local/datakit",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "RestartSec=10",
        "StartLimitIntervalSec=60",
        "StartLimitBurst=5",
        "LimitNOFILE=64000",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/usr/local/datakit",
        "LogsDirectory=datakit",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    // verify checks that the commands exist: point them at the scratch install.
    let dk = root.join("usr/local/datakit");
    let check = dir.path().join("verify/datakit.service");
    std::fs::create_dir_all(check.parent().unwrap()).unwrap();
    std::fs::write(
        &check,
        unit.replace("/usr/local/datakit", dk.to_str().unwrap()),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&check)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Unknown keys and bad values are only warnings: there must be none.
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "",
        "{}",
        text(&o)
    );
}

#[test]
#[allow(unsafe_code)]
fn the_installed_binary_makes_a_clean_first_start_from_the_package_layout() {
    if !require_root("a private network namespace for the installed agent")
        || !require_program("ip", "iproute2")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install_deb(dir.path(), &root);
    let dk = root.join("usr/local/datakit");
    let binary = dk.join("datakit");
    assert!(!dk.join("conf.d/datakit.conf").exists());

    // The default config listens on 9529: run in a network namespace of this thread only,
    // so no port of the host is used and no other agent is in the way.
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET only moves this thread (and the processes it
        // starts) to a new network namespace; no memory is shared with it.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        run(Command::new("ip").args(["link", "set", "lo", "up"]));

        // The unit's ExecStartPre accepts the fresh install.
        let o = Command::new(&binary)
            .args(["check", "--config", "--workdir"])
            .arg(&dk)
            .output()
            .unwrap();
        assert!(o.status.success(), "check --config: {}", text(&o));

        let logs = std::fs::File::create(dk.join("../agent.err")).unwrap();
        let mut child = Command::new(&binary)
            .arg("run")
            .arg("--workdir")
            .arg(&dk)
            .stdout(std::process::Stdio::null())
            .stderr(logs)
            .spawn()
            .unwrap();
        let api = std::net::SocketAddr::from(([127, 0, 0, 1], 9529));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let body = wait_for("/v1/ping on 9529", Duration::from_secs(20), || {
                assert!(child.try_wait().unwrap().is_none(), "the agent exited");
                match try_request(api, "GET", "/v1/ping", &[], b"") {
                    Ok((200, body)) => Some(body),
                    _ => None,
                }
            });
            let ping: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(ping["content"]["version"], "9.2.0", "{ping}");
            // The default config was written from the built-in sample, as shipped.
            assert_eq!(
                std::fs::read_to_string(dk.join("conf.d/datakit.conf")).unwrap(),
                std::fs::read_to_string(dk.join("conf.d/samples/datakit.conf")).unwrap()
            );
            // A default input's metric arrives in the default local sink.
            wait_for(
                "a mem point in data/local/metric",
                Duration::from_secs(40),
                || {
                    read_local_points(&dk.join("data/local/metric"))
                        .into_iter()
                        .find(|p| p.name == "mem")
                },
            );
        }));
        let _ = child.kill();
        let _ = child.wait();
        if let Err(panic) = result {
            let log = std::fs::read_to_string(dk.join("../agent.err")).unwrap_or_default();
            eprintln!("agent stderr:\n{log}");
            std::panic::resume_unwind(panic);
        }
    });
    handle.join().unwrap();
}

/// A fake `systemctl` that appends its arguments to `<dir>/systemctl.log`.
fn fake_systemctl(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let script = bin_dir.join("systemctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n",
            dir.join("systemctl.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin_dir
}

fn service(dir: &Path, path: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("service")
        .args(args)
        .env("PATH", path)
        .env("DK_SYSTEMD_UNIT_DIR", dir.join("units"))
        .output()
        .unwrap()
}

#[test]
fn datakit_service_writes_the_unit_for_its_install_dir_and_drives_systemctl() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake_systemctl(dir.path());
    let log = || std::fs::read_to_string(dir.path().join("systemctl.log")).unwrap_or_default();

    let o = service(dir.path(), &path, &["-I", "--workdir", "/opt/dk-test"]);
    assert!(o.status.success(), "{}", text(&o));
    let unit = std::fs::read_to_string(dir.path().join("units/datakit.service")).unwrap();
    assert!(unit.contains("\nExecStart=/opt/dk-test/datakit run --workdir /opt/dk-test\n"));
    assert!(unit.contains("\nReadWritePaths=/opt/dk-test\n"));
    assert_eq!(log(), "daemon-reload\nenable --now datakit.service\n");

    for (flag, call) in [("-S", "start"), ("-T", "stop"), ("-R", "restart")] {
        let before = log();
        let o = service(dir.path(), &path, &[flag]);
        assert!(o.status.success(), "{flag}: {}", text(&o));
        assert_eq!(log(), format!("{before}{call} datakit.service\n"));
    }

    let before = log();
    let o = service(dir.path(), &path, &["-U"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir.path().join("units/datakit.service").exists());
    assert_eq!(
        log(),
        format!("{before}disable --now datakit.service\ndaemon-reload\n")
    );

    // Nothing left to uninstall: said so, and systemctl is not called.
    let before = log();
    let o = service(dir.path(), &path, &["-U"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no unit file at"),
        "{}",
        text(&o)
    );
    assert_eq!(log(), before);
}

#[test]
fn datakit_service_says_to_run_under_another_service_manager_when_systemd_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = service(dir.path(), &empty, &["-S"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("systemctl not found on PATH"), "{err}");
    assert!(err.contains("datakit run --workdir"), "{err}");

    // A systemctl that cannot reach systemd: its words are passed on with the way out.
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let script = bin_dir.join("systemctl");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'System has not been booted with systemd as init system (PID 1).' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = service(dir.path(), &bin_dir, &["-R"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`systemctl restart datakit.service` failed"),
        "{err}"
    );
    assert!(err.contains("not been booted with systemd"), "{err}");
    assert!(err.contains("under your service manager"), "{err}");
}

#[test]
fn installing_the_deb_over_a_datakit_install_keeps_its_config_and_unsent_data_and_replaces_its_binary()
 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let dk = root.join("usr/local/datakit");
    // What Datakit's install script leaves: its binary, its config and its WAL.
    let main =
        "# Datakit's\n[dataway]\n  urls = [\"https://openway.example/v1/write?token=tkn_x\"]\n";
    let files = [
        ("datakit", "#!/bin/sh\necho datakit 1.84.1 from Go\n"),
        ("conf.d/datakit.conf", main),
        ("conf.d/host/cpu.conf", "[[inputs.cpu]]\n"),
        ("cache/dw-wal/metric/data", "unsent"),
    ];
    for (rel, body) in files {
        let p = dk.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    install_deb(dir.path(), &root);
    assert_eq!(reported_version(&dk.join("datakit")), "9.2.0");
    for (rel, body) in &files[1..] {
        assert_eq!(
            &std::fs::read_to_string(dk.join(rel)).unwrap(),
            body,
            "{rel}"
        );
    }
}

/// Runs `script args` in a private mount namespace where systemd seems to run
/// (`/run/systemd/system` exists), `/usr/local` and `/var/log` are empty scratch tmpfs, and
/// `systemctl` is a fake that logs its arguments; returns the log.
fn run_maintainer_script(dir: &Path, script: &Path, args: &[&str]) -> String {
    let bin_dir = fake_systemctl(dir);
    let log = dir.join("systemctl.log");
    let _ = std::fs::remove_file(&log);
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-euc"])
        .arg(
            "mount -t tmpfs dk-test /run && mkdir -p /run/systemd/system \
             && mount -t tmpfs dk-test /usr/local && mount -t tmpfs dk-test /var/log \
             && script=\"$1\" && shift && exec sh \"$script\" \"$@\"",
        )
        .arg("sh")
        .arg(script)
        .args(args)
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
        )
        .env_remove("DPKG_ROOT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: {}", script.display(), text(&o));
    std::fs::read_to_string(&log).unwrap_or_default()
}

#[test]
fn the_maintainer_scripts_enable_and_start_on_install_restart_on_upgrade_and_stop_on_remove() {
    if !require_root("private mount namespaces for the maintainer scripts")
        || !require_program("unshare", "util-linux")
        || !require_program("rpmbuild", "rpm")
        || !require_program("rpm", "rpm")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/deb");
    let script = |name: &str| deb.join(name);
    assert_eq!(
        run_maintainer_script(dir.path(), &script("postinst"), &["configure"]),
        "daemon-reload\nenable datakit.service\nstart datakit.service\n"
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &script("postinst"), &["configure", "9.0.0"]),
        "daemon-reload\nenable datakit.service\ntry-restart datakit.service\n"
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &script("prerm"), &["upgrade", "9.0.1"]),
        ""
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &script("prerm"), &["remove"]),
        "stop datakit.service\n"
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &script("postrm"), &["remove"]),
        "disable datakit.service\ndaemon-reload\n"
    );

    // The rpm's scriptlets, as rpm runs them ($1 = number of installed versions after).
    let out = package(&dir.path().join("out"), "9.3.0", "rpm", None);
    let rpm = out.join(format!("datakit-9.3.0-1.{}.rpm", std::env::consts::ARCH));
    let scriptlet = |tag: &str| {
        let o = run(Command::new("rpm")
            .args(["-qp", "--queryformat", &format!("%{{{tag}}}")])
            .arg(&rpm));
        let path = dir.path().join(tag);
        std::fs::write(&path, &o.stdout).unwrap();
        path
    };
    assert_eq!(
        run_maintainer_script(dir.path(), &scriptlet("POSTIN"), &["1"]),
        "daemon-reload\nenable datakit.service\nstart datakit.service\n"
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &scriptlet("POSTIN"), &["2"]),
        "daemon-reload\nenable datakit.service\ntry-restart datakit.service\n"
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &scriptlet("PREUN"), &["0"]),
        "disable --now datakit.service\n"
    );
    assert_eq!(
        run_maintainer_script(dir.path(), &scriptlet("PREUN"), &["1"]),
        ""
    );
}
