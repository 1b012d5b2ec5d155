//! Test certificates made with GnuTLS's `certtool` (Debian package gnutls-bin): a CA and
//! certificates it signs, for TLS servers and clients both (the fleet tests and bench).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and certificates signed by it, in `dir` (keys root 0600).
pub struct Ca {
    dir: PathBuf,
}

fn certtool(args: &[&str]) {
    let out = Command::new("certtool")
        .args(args)
        .output()
        .expect("run certtool (apt-get install gnutls-bin)");
    assert!(
        out.status.success(),
        "certtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        fs::create_dir_all(dir).unwrap();
        let ca = Ca {
            dir: dir.to_path_buf(),
        };
        let tmpl = ca.file("ca.tmpl");
        fs::write(
            &tmpl,
            format!("cn = \"{name}\"\nca\ncert_signing_key\nexpiration_days = 30\n"),
        )
        .unwrap();
        certtool(&[
            "--generate-privkey",
            "--key-type=ecdsa",
            "--outfile",
            &ca.file("ca.key"),
        ]);
        certtool(&[
            "--generate-self-signed",
            "--load-privkey",
            &ca.file("ca.key"),
            "--template",
            &tmpl,
            "--outfile",
            &ca.file("ca.pem"),
        ]);
        ca
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn pem(&self) -> String {
        self.file("ca.pem")
    }

    /// (certificate, key) for `cn`, for TLS clients and servers both.
    pub fn issue(&self, cn: &str) -> (String, String) {
        let tmpl = self.file(&format!("{cn}.tmpl"));
        fs::write(
            &tmpl,
            format!("cn = \"{cn}\"\ndns_name = \"{cn}\"\ntls_www_server\ntls_www_client\nsigning_key\nexpiration_days = 30\n"),
        )
        .unwrap();
        let (cert, key) = (
            self.file(&format!("{cn}.pem")),
            self.file(&format!("{cn}.key")),
        );
        certtool(&["--generate-privkey", "--key-type=ecdsa", "--outfile", &key]);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        certtool(&[
            "--generate-certificate",
            "--load-privkey",
            &key,
            "--load-ca-certificate",
            &self.pem(),
            "--load-ca-privkey",
            &self.file("ca.key"),
            "--template",
            &tmpl,
            "--outfile",
            &cert,
        ]);
        (cert, key)
    }
}
