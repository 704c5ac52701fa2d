//! [`S3Server`]: a real S3-compatible server for the evidence tests, moto's server mode
//! (PyPI `moto[server]`), from a virtual environment made once under `target/` (behind
//! a lock, so tests running at once make it once). It keeps objects in memory and
//! accepts any credentials; dropped, it stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOTO: &str = "moto[server]==5.2.6";

/// A running S3 server on 127.0.0.1.
pub struct S3Server {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl S3Server {
    /// Starts one, its log in `dir`; returns once it answers.
    pub fn start(dir: &Path) -> Self {
        let server = crate::python_venv("moto-5.2.6", MOTO).join("bin/moto_server");
        let port = crate::free_port();
        let log = dir.join("moto.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start moto_server");
        let s3 = Self {
            port,
            child: Some(child),
            log,
        };
        let started = Instant::now();
        while crate::http_get(port, "/").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer:\n{}",
                s3.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes an unsigned request).
    pub fn create_bucket(&self, name: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
    }

    /// Stops it (SIGKILL): the store's outage.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
