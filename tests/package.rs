//! The Debian package: `make deb-package` on the binary under test, checked with dpkg-deb
//! (fields, contents, maintainer scripts), and its prerm run against a fake root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::CommandFactory;

const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");

fn run(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    assert!(
        out.status.success(),
        "{desc} failed ({})\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory of this test's own under cargo's target dir, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sftpctl-key-add.8.gz` for every visible command of the clap tree, `sftpctl.8.gz` first.
fn expected_man_pages() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        out.insert(format!("{prefix}.8.gz"));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            walk(sub, &format!("{prefix}-{}", sub.get_name()), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&sftpctl::cli::Cli::command(), "sftpctl", &mut out);
    out
}

#[test]
fn make_deb_package_builds_a_complete_package() {
    let tmp = TempDir::new("package");
    let deb_dir = tmp.0.join("debian");
    let out = run(Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .arg("deb-package")
        .arg(format!("BIN={BIN}"))
        .arg(format!("DEB_DIR={}", deb_dir.display())));
    let arch = text(&run(Command::new("dpkg").arg("--print-architecture")));
    let arch = arch.trim();
    let version = env!("CARGO_PKG_VERSION");
    let deb = deb_dir.join(format!("sftpctl_{version}_{arch}.deb"));
    assert!(
        text(&out).lines().any(|l| l == deb.display().to_string()),
        "make deb-package does not print {}:\n{}",
        deb.display(),
        text(&out)
    );
    let debs: Vec<_> = std::fs::read_dir(&deb_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        debs,
        [deb.file_name().unwrap().to_string_lossy()],
        "exactly one .deb, no staging left"
    );

    let field = |name: &str| {
        text(&run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "sftpctl");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Architecture"), arch);
    let depends = field("Depends");
    for dep in ["openssh-server", "rsyslog", "logrotate"] {
        assert!(depends.split(", ").any(|d| d == dep), "Depends: {depends}");
    }
    let libc = regex::Regex::new(r"(^|, )libc6 \(>= 2\.\d+\)").unwrap();
    assert!(libc.is_match(&depends), "Depends: {depends}");
    assert!(field("Installed-Size").parse::<u64>().unwrap() > 1000);

    // Contents: path → mode/owner column.
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let entries: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (
                cols[5].trim_start_matches('.').to_string(),
                format!("{} {}", cols[0], cols[1]),
            )
        })
        .collect();
    let has = |path: &str| {
        entries
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
    };
    assert_eq!(
        has("/usr/sbin/sftpctl").as_deref(),
        Some("-rwxr-xr-x root/root")
    );
    let pages: BTreeSet<String> = entries
        .iter()
        .filter_map(|(p, _)| p.strip_prefix("/usr/share/man/man8/"))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        pages,
        expected_man_pages(),
        "one man page per visible command, no other"
    );
    for path in [
        "/usr/share/bash-completion/completions/sftpctl",
        "/usr/share/zsh/vendor-completions/_sftpctl",
        "/usr/share/fish/vendor_completions.d/sftpctl.fish",
        "/usr/share/doc/sftpctl/copyright",
        "/usr/share/doc/sftpctl/README.md",
        "/usr/share/doc/sftpctl/admin-guide.md",
    ] {
        assert_eq!(has(path).as_deref(), Some("-rw-r--r-- root/root"), "{path}");
    }
    for doc in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")).unwrap() {
        let name = doc.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert!(
                has(&format!("/usr/share/doc/sftpctl/{name}")).is_some(),
                "{name}"
            );
        }
    }
    // Nothing outside /usr: installing the package writes no configuration.
    assert!(
        entries
            .iter()
            .all(|(p, _)| p == "/" || p.starts_with("/usr/")),
        "{listing}"
    );

    // Maintainer scripts: a prerm, and nothing that could configure the host.
    let control = tmp.0.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let mut scripts: Vec<String> = std::fs::read_dir(&control)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    scripts.sort();
    assert_eq!(scripts, ["control", "md5sums", "prerm"]);
    let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    assert!(
        !info.contains("postinst") && !info.contains("preinst"),
        "{info}"
    );

    // A man page is gzip'd and renders as the command's page.
    let page = tmp.0.join("extract");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&page));
    let roff = text(&run(Command::new("gzip")
        .arg("-dc")
        .arg(page.join("usr/share/man/man8/sftpctl-init.8.gz"))));
    assert!(roff.contains(".TH sftpctl-init 8"), "{roff}");
    assert!(roff.contains("undo"), "init's page names --undo");
}

#[test]
fn prerm_refuses_removal_while_sftpctl_is_set_up() {
    let prerm = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/debian/prerm");
    run(Command::new("sh").arg("-n").arg(&prerm));
    let tmp = TempDir::new("prerm");
    let root = &tmp.0;
    let prerm_in = |arg: &[&str]| {
        Command::new("sh")
            .arg(&prerm)
            .args(arg)
            .env("DPKG_ROOT", root)
            .env_remove("SFTPCTL_REMOVE_ANYWAY")
            .output()
            .unwrap()
    };
    // Not set up: removal goes ahead.
    for action in ["remove", "purge"] {
        assert!(prerm_in(&[action]).status.success());
    }
    // Set up, marked by each of the files init writes.
    for (marker, text) in [
        (
            "etc/ssh/sshd_config.d/50-sftpctl.conf",
            "# Managed by sftpctl\n",
        ),
        (
            "etc/systemd/system/sftpctl-watch.service",
            "# Managed by sftpctl\n",
        ),
        (
            "etc/ssh/sshd_config",
            "Port 22\n# BEGIN sftpctl match\n# END sftpctl match\n",
        ),
    ] {
        let path = root.join(marker);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        for action in ["remove", "purge"] {
            let out = prerm_in(&[action]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{marker} {action}: {err}");
            assert!(
                err.contains("sftpctl init --undo") && err.contains("sftpctl remove-user NAME"),
                "{err}"
            );
        }
        // Upgrades pass through.
        assert!(prerm_in(&["upgrade", "0.2.0"]).status.success());
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::write(root.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
    assert!(
        prerm_in(&["remove"]).status.success(),
        "a stock sshd_config is not sftpctl's"
    );
}

#[test]
fn version_names_the_git_commit() {
    let out = run(Command::new(BIN).arg("--version"));
    let line = text(&out);
    let re =
        regex::Regex::new(r"^sftpctl \d+\.\d+\.\d+ \(git ([0-9a-f]{12}(-dirty)?|unknown)\)\n$")
            .unwrap();
    assert!(re.is_match(&line), "{line:?}");
    // Built from this git checkout, so the commit is known.
    if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() {
        assert!(!line.contains("unknown"), "{line:?}");
    }
}
