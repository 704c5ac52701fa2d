//! Test plumbing shared by every Chitti test crate (`agent/tests`, `hub/tests` and the
//! cross-binary scenarios in `tests/`), depending on neither the agent nor the hub:
//! free ports ([`free_port`]), a TCP proxy the test can cut ([`CuttableProxy`]),
//! brokers of the test's own ([`Mosquitto`], [`NatsServer`], a [`NatsCluster`]), a scratch Postgres
//! database per test ([`ScratchPostgres`]), a Patroni cluster behind HAProxy
//! ([`PostgresHa`]), an S3 server ([`S3Server`], moto), an HTTP receiver for notifications
//! ([`HttpReceiver`]), and the FLIR fixtures ([`fixture`], [`read_fixture`]).

mod brokers;
mod pgha;
mod postgres;
mod proxy;
mod receiver;
mod s3;

pub use brokers::{
    shipped_nats_node_config, with_nats_gateways, Mosquitto, NatsCluster, NatsGatewayLogin,
    NatsNode, NatsNodePorts, NatsServer,
};
pub use pgha::{http_get, PatroniNode, PostgresHa};
pub use postgres::{database_url, postgres_admin_url, ScratchPostgres};
pub use proxy::CuttableProxy;
pub use receiver::{HttpReceiver, Received, SignatureCheck};
pub use s3::S3Server;

use std::path::PathBuf;

/// A free TCP port on 127.0.0.1 (for servers that cannot report the one they got).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The workspace root (the folder with the virtual `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support/ is inside the workspace")
        .to_path_buf()
}

/// The FLIR fixtures: `tests/fixtures/flir/` in the workspace.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/flir")
}

/// A FLIR fixture's path.
pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// A FLIR fixture's bytes.
pub fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Python virtual environment under the target folder, `target/{name}`, with
/// `requirement` installed from PyPI: made once (behind a lock, so tests running at once
/// make it once) and reused while its `ready` file names the same requirement. Its
/// folder.
pub fn python_venv(name: &str, requirement: &str) -> PathBuf {
    use std::process::Command;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let venv = target.join(name);
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join(format!("{name}.lock"))).unwrap();
    // Held until this function returns (the guard unlocks when dropped).
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let ready = venv.join("ready");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(requirement) {
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv (Debian: python3-venv)");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let installed = Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "-q", requirement])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install {requirement} failed");
        std::fs::write(&ready, requirement).unwrap();
    }
    venv
}
