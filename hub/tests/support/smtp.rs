//! A real SMTP server for e-mail notification tests: aiosmtpd (PyPI) running
//! `hub/tests/smtp/server.py` from a virtual environment made once under `target/`
//! (behind a lock, so tests running at once make it once). Messages land in a
//! Maildir the test reads; dropped, the server stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// The venv's python, made when missing.
fn python() -> PathBuf {
    chitti_test_support::python_venv("aiosmtpd-1.4.6", AIOSMTPD).join("bin/python")
}

/// A running SMTP server on 127.0.0.1.
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    maildir: PathBuf,
    child: Child,
    log: PathBuf,
}

impl SmtpServer {
    /// Starts one in `dir`; with `tls` (certificate and key files) it offers and
    /// requires STARTTLS, with `login` it requires that user name and password.
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>, login: Option<(&str, &str)>) -> Self {
        let python = python();
        let port = chitti_test_support::free_port();
        let ready = dir.join("smtp-ready");
        let maildir = dir.join("maildir");
        let log = dir.join("smtp.log");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .arg(port.to_string())
            .arg(&ready)
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some((cert, key)) = tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, password)) = login {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the SMTP server exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the SMTP server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self {
            port,
            maildir,
            child,
            log,
        }
    }

    /// Every message stored so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }

    /// The server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
