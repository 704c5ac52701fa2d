//! [`S3Server`]: a real S3-compatible server for the evidence tests, moto's server mode
//! (PyPI `moto[server]`), from a virtual environment made once under `target/` (behind
//! a lock, so tests running at once make it once). It keeps objects in memory and
//! accepts any credentials; dropped, it stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOTO: &str = "moto[server]==5.2.6";

/// The venv's `moto_server`, made when missing.
fn moto_server() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let venv = target.join("moto-5.2.6");
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join("moto.lock")).unwrap();
    // Held until this function returns (the guard unlocks when dropped).
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    if !venv.join("ready").exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv (python3-venv) to make the S3 server's environment");
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "-q", MOTO])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install {MOTO} failed");
        std::fs::write(venv.join("ready"), MOTO).unwrap();
    }
    venv.join("bin/moto_server")
}

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
        let server = moto_server();
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
