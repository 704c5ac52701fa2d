//! Brokers of the test's own on free ports, killed on drop: [`Mosquitto`] and
//! [`NatsServer`] (the machine's binaries, which `tests/run-all.sh` installs).

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Mosquitto of the test's own on a free port, its configuration `extra` lines after
/// the listener; killed (SIGKILL) on drop. Its log goes to a file (and to stderr when
/// `MOSQUITTO_LOG` is set).
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl Mosquitto {
    /// Starts `mosquitto -c <dir>/mosquitto-<port>.conf` on a free port; returns once
    /// it logs "running".
    pub fn start(dir: &Path, extra: &str) -> Self {
        Self::start_on(free_port(), dir, extra)
    }

    /// The same on `port` (a broker that comes back where it was).
    pub fn start_on(port: u16, dir: &Path, extra: &str) -> Self {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        let log = dir.join(format!("mosquitto-{port}.log"));
        // `user root`: a root Mosquitto would otherwise drop to the `mosquitto` user,
        // which cannot read the test's private temporary directory.
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\npersistence false\n\
                 log_dest stderr\nlog_type all\nlistener {port} 127.0.0.1\n{extra}\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the mosquitto binary (tests/run-all.sh installs it)");
        // Mosquitto says "… running" once its listener is open; its log is copied to a
        // file from then on (the pipe is drained so it never blocks).
        use std::io::{BufRead, Write};
        let echo = std::env::var_os("MOSQUITTO_LOG").is_some();
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut file = std::fs::File::create(&log).expect("mosquitto log");
        for line in lines.by_ref() {
            let line = line.expect("mosquitto log line");
            let _ = writeln!(file, "{line}");
            if line.contains(" running") {
                break;
            }
        }
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if echo {
                    eprintln!("mosquitto: {line}");
                }
            }
        });
        let mosquitto = Self { child, port, log };
        assert!(
            mosquitto.log_text().contains(" running"),
            "mosquitto did not start:\n{}",
            mosquitto.log_text()
        );
        mosquitto
    }

    /// Stops it now (SIGKILL: a crash, no goodbye to clients).
    pub fn kill(self) {}

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server of the test's own (MQTT and JetStream on), from a configuration text;
/// killed on drop.
pub struct NatsServer {
    child: std::process::Child,
    /// Its MQTT port on 127.0.0.1.
    pub mqtt_port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -c <dir>/nats.conf` with `config`, in which `NATS_PORT`,
    /// `MQTT_PORT` and `STORE_DIR` are replaced by free ports and a folder in `dir`;
    /// returns once it says it is ready.
    pub fn start(dir: &Path, config: &str) -> Self {
        use std::io::{BufRead, Write};
        let mqtt_port = free_port();
        let store = dir.join("nats-store");
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            config
                .replace("NATS_PORT", &free_port().to_string())
                .replace("MQTT_PORT", &mqtt_port.to_string())
                .replace("STORE_DIR", &store.display().to_string()),
        )
        .expect("write nats.conf");
        let log = dir.join("nats.log");
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the nats-server binary (tests/run-all.sh installs it)");
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut file = std::fs::File::create(&log).expect("nats log");
        for line in lines.by_ref() {
            let line = line.expect("nats log line");
            let _ = writeln!(file, "{line}");
            if line.contains("Server is ready") {
                break;
            }
        }
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
            }
        });
        let server = Self {
            child,
            mqtt_port,
            log,
        };
        assert!(
            server.log_text().contains("Server is ready"),
            "nats-server did not start:\n{}",
            server.log_text()
        );
        server
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
