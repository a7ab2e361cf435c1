//! Certificates for TLS tests, made with the real openssl command line: a
//! CA, and server or client certificates it signs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `openssl args` in `dir`, failing the test with its stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let bin = "/usr/bin/openssl";
    assert!(
        Path::new(bin).exists(),
        "openssl is not installed: run scripts/test, which installs it"
    );
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory of keys and certificates.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `NAME.pem` and `NAME.key`: a self-signed CA.
    pub fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    }

    /// `NAME.pem` and `NAME.key` signed by `ca`: for a server at 127.0.0.1
    /// (`server`), or for a client identified by its CN.
    pub fn cert(&self, name: &str, cn: &str, ca: &str, server: bool) {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        let ext = if server {
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        } else {
            "extendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }

    /// The SHA-256 fingerprint of the certificate a TLS server at
    /// 127.0.0.1:`port` presents.
    pub fn served_fingerprint(&self, port: u16) -> String {
        let out = Command::new("/usr/bin/openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let pem = String::from_utf8_lossy(&out.stdout);
        let start = pem
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a served certificate");
        let end = pem.find("-----END CERTIFICATE-----").expect("its end") + 25;
        let path = self.dir.join("served.pem");
        std::fs::write(&path, &pem[start..end]).unwrap();
        self.fingerprint_of(&path)
    }

    pub fn fingerprint_of(&self, pem: &Path) -> String {
        let out = Command::new("/usr/bin/openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(pem)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
