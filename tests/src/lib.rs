//! Helpers shared by the cross-binary scenarios in `tests/tests/`.
//!
//! Scenarios run the real `chitti-agent` and `chitti-hub` executables. Cargo only hands
//! a package the paths of its *own* binaries, so [`binary`] finds the workspace's from
//! the test executable's location (`target/<profile>/deps/…` → `target/<profile>/`)
//! and has the same cargo build them (a no-op when they are up to date).
//!
//! The rest is the one sandbox every scenario starts its world with: processes that are
//! killed when dropped ([`Process`], [`start_hub`], [`start_agent`]), enrolment and
//! configurations, a cuttable TCP proxy ([`CuttableProxy`]), a scratch Postgres database
//! per test ([`TestPostgres`]), brokers of the test's own ([`Mosquitto`],
//! [`NatsServer`]), the findings a simulated camera should produce
//! ([`predicted_shapes`]), and [`eventually`] for bounded waits.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of a workspace binary (`chitti-agent`, `chitti-hub`), built if needed.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // Build once per test process even when the file exists: `cargo test -p chitti-e2e`
    // does not rebuild the other packages' binaries, and a stale one tests old code.
    // A no-op when it is up to date.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        built.push(name.to_string());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--bin", name])
            .current_dir(workspace_root());
        if name == "chitti-hub" {
            // The demo scenarios run `chitti-hub demo`, which the default build leaves out.
            build.args(["--features", "chitti-hub/demo"]);
        }
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// The workspace root (the folder with the virtual `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A FLIR fixture from `tests/fixtures/flir/`.
pub fn flir_fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/flir").join(name)
}

/// A process the test started; killed on drop.
pub struct Process {
    /// The child.
    pub child: std::process::Child,
    /// Its stderr log file.
    pub log: PathBuf,
}

impl Process {
    /// SIGKILL and wait.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal the process");
        self.child.wait().expect("wait for the process")
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a started hub listens.
#[derive(Debug, Clone)]
pub struct HubAddrs {
    /// The embedded broker's TCP listener (none in external mode).
    pub mqtt: Option<std::net::SocketAddr>,
    /// The HTTP listener.
    pub http: std::net::SocketAddr,
}

/// Starts `chitti-hub serve ARGS…` and reads the line that says where it listens.
pub fn start_hub(args: &[&str], log: &Path) -> (Process, HubAddrs) {
    use std::io::BufRead;
    let mut child = Command::new(binary("chitti-hub"))
        .arg("serve")
        .args(args)
        .env("CHITTI_LOG", "info,chitti_hub=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).expect("hub log"))
        .spawn()
        .expect("start chitti-hub");
    let stdout = child.stdout.take().expect("hub stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the hub's first line");
    let process = Process {
        child,
        log: log.to_path_buf(),
    };
    let rest = line
        .strip_prefix("chitti-hub listening: mqtt ")
        .unwrap_or_else(|| panic!("hub did not start: {line:?}\n{}", process.log_text()));
    let (mqtt, http) = rest.trim().split_once(" http ").expect("mqtt … http …");
    let addrs = HubAddrs {
        mqtt: mqtt.split(',').next().and_then(|a| a.parse().ok()),
        http: http.parse().expect("http address"),
    };
    (process, addrs)
}

/// Runs `chitti-hub ARGS…` to completion; panics with its output when it fails.
pub fn hub_command(args: &[&str]) -> String {
    let out = Command::new(binary("chitti-hub"))
        .args(args)
        .output()
        .expect("run chitti-hub");
    assert!(
        out.status.success(),
        "chitti-hub {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `chitti-agent run --config FILE`.
pub fn start_agent(config: &Path, log: &Path) -> Process {
    let child = Command::new(binary("chitti-agent"))
        .args(["run", "--config"])
        .arg(config)
        .env("CHITTI_LOG", "info,chitti_agent=debug")
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("agent log"),
        )
        .spawn()
        .expect("start chitti-agent");
    Process {
        child,
        log: log.to_path_buf(),
    }
}

/// Longest any wait may take before the test fails (a hang guard, not a timing
/// assertion).
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until `check` returns `Some`, re-checking every 50 ms; panics with `what`
/// and `context()` after [`HANG_GUARD`].
pub async fn eventually<T, F, Fut>(what: &str, context: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A simulated agent configuration whose frames are produced as fast as they are
/// taken (none dropped), so its findings are exactly predictable.
pub fn simulated_agent_config(
    site: &str,
    gateway: &str,
    mqtt: &str,
    credentials: &Path,
    outbox: &Path,
    frames: u64,
) -> String {
    format!(
        r#"
version = 1
[identity]
site = "{site}"
gateway = "{gateway}"
[[camera]]
id = "sim-1"
asset = "bay-1"
[camera.source]
kind = "simulated"
width = 160
height = 120
fps = 1.0
speed = 20.0
seed = 7
frames = {frames}
unpaced = true
[analysis.tracking]
raise_after_frames = 2
clear_after_frames = 4
update_delta_c = 5.0
[outbox]
path = "{outbox}"
resend_after_s = 3
[mqtt]
url = "{mqtt}"
username = "{site}/{gateway}"
password_file = "{cred}/mqtt-password"
signing_key_file = "{cred}/signing.key"
hub_public_keys = ["{hub_key}"]
reconnect_min_ms = 50
reconnect_max_ms = 500
[health]
status_interval_s = 1
"#,
        outbox = outbox.display(),
        cred = credentials.display(),
        hub_key = hub_public_key(credentials),
    )
}

/// The hub's public key as `gateway add` wrote it beside a gateway's credentials.
pub fn hub_public_key(credentials: &Path) -> String {
    let path = credentials.join("hub-public-key");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// What a finding says without its ids and clocks.
pub fn shape(f: &chitti_common::finding::Finding) -> (String, String, String, u8, String) {
    (
        f.gateway.clone(),
        f.camera.clone(),
        format!("{:?}", f.track.state),
        f.severity.level,
        format!("{:.3}", f.hotspot.max_c),
    )
}

/// The findings a simulated agent configuration must deliver, as sorted shapes.
pub fn predicted_shapes(config_text: &str) -> Vec<(String, String, String, u8, String)> {
    let config =
        chitti_agent::config::AgentConfig::from_toml(config_text, "predicted", Path::new("/"))
            .expect("valid agent configuration");
    let mut v: Vec<_> = chitti_agent::topology::predicted_findings(&config)
        .expect("predicted findings")
        .iter()
        .map(shape)
        .collect();
    v.sort();
    v
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A TCP proxy the test can cut (every connection closed, new ones refused) and
/// restore: a network link or a database that goes away.
pub struct CuttableProxy {
    /// Its port.
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    /// Proxies 127.0.0.1:port → 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut state = rx.clone();
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up: tx }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// A fresh Postgres database on the test server, dropped on drop.
pub struct TestPostgres {
    /// Its URL.
    pub url: String,
    name: String,
    admin: String,
}

impl TestPostgres {
    /// Creates `chitti_e2e_<random>` through `postgres://postgres@127.0.0.1:5432/postgres`
    /// (or `CHITTI_TEST_POSTGRES_URL`).
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin = std::env::var("CHITTI_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("chitti_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let url = format!(
            "{}/{name}",
            admin.rsplit_once('/').expect("url with a database").0
        );
        Self { url, name, admin }
    }

    /// The URL through another port (a proxy in front of the server).
    pub fn url_via(&self, port: u16) -> String {
        self.url.replace(":5432/", &format!(":{port}/"))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside any runtime guarantee: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Every finding in the store, page after page, newest received first.
pub async fn all_stored_findings(
    store: &chitti_hub::store::AnyStore,
) -> Vec<chitti_hub::store::StoredFinding> {
    use chitti_hub::store::IngestStore;
    let mut findings = Vec::new();
    let mut query = chitti_hub::store::FindingQuery {
        limit: 500,
        ..chitti_hub::store::FindingQuery::default()
    };
    loop {
        let page = store.list_findings(&query).await.expect("list findings");
        findings.extend(page.items);
        match page.next_cursor {
            Some(c) => query.after = Some(c),
            None => break,
        }
    }
    findings
}

/// A hub configuration in `dir` on embedded defaults (broker and HTTP on free ports)
/// whose store is the Postgres database at `store_url` (often through a
/// [`CuttableProxy`]); its path.
pub fn postgres_hub_config(dir: &Path, store_url: &str) -> PathBuf {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{}\"\n[store]\nurl = \"{store_url}\"\n\
             [broker.embedded]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("data").display(),
        ),
    )
    .expect("write the hub configuration");
    config
}

/// The ids of every finding in the store.
pub async fn stored_finding_ids(
    store: &chitti_hub::store::AnyStore,
) -> std::collections::BTreeSet<uuid::Uuid> {
    all_stored_findings(store)
        .await
        .into_iter()
        .map(|f| f.finding.id)
        .collect()
}

/// The SQLite URL of a hub data directory.
pub fn sqlite_url(data: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data.join("chitti.db").display())
}

/// Enrols a gateway into the hub's database (`chitti-hub gateway add`), its
/// credentials written to `out`.
pub fn enrol(hub_args: &[&str], site: &str, gateway: &str, out: &Path) {
    let mut args = vec!["gateway", "add"];
    args.extend_from_slice(hub_args);
    let out_s = out.display().to_string();
    args.extend_from_slice(&["--site", site, "--gateway", gateway, "--out", &out_s]);
    hub_command(&args);
}

/// The finding ids an agent's log names (the agent logs each finding once, when made).
pub fn logged_finding_ids(log: &str) -> std::collections::BTreeSet<uuid::Uuid> {
    log.lines()
        .filter_map(|l| l.split(" finding finding=").nth(1))
        .filter_map(|r| uuid::Uuid::parse_str(r.split_whitespace().next()?).ok())
        .collect()
}

/// Signs in through `POST /api/v1/auth/login`; the bearer token.
pub fn api_login(http: std::net::SocketAddr, username: &str, password: &str) -> String {
    let text = ureq::post(format!("http://{http}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .send(serde_json::json!({ "username": username, "password": password }).to_string())
        .expect("sign in")
        .body_mut()
        .read_to_string()
        .expect("login answer");
    let body: serde_json::Value = serde_json::from_str(&text).expect("login JSON");
    body["token"].as_str().expect("token").to_string()
}

/// A Mosquitto of the test's own on a free port, its configuration `extra` lines after
/// the listener; killed on drop. (The hub's broker tests have their own: the two test
/// crates cannot share a helper without a crate of their own.)
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl Mosquitto {
    /// Starts `mosquitto -c <dir>/mosquitto.conf`; returns once it logs "running".
    pub fn start(dir: &Path, extra: &str) -> Self {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
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

/// A hub configuration in `dir` using the external broker at `broker_url` (as
/// `username` with `password`, when given) and the store at `store_url`; its path.
pub fn external_hub_config(
    dir: &Path,
    store_url: &str,
    broker_url: &str,
    login: Option<(&str, &str)>,
) -> PathBuf {
    external_hub_config_in_group(dir, store_url, broker_url, login, "chitti-hub")
}

/// [`external_hub_config`] with this shared-subscription group (`""`: plain
/// subscriptions).
pub fn external_hub_config_in_group(
    dir: &Path,
    store_url: &str,
    broker_url: &str,
    login: Option<(&str, &str)>,
    group: &str,
) -> PathBuf {
    let config = dir.join("hub.toml");
    // A SQLite store URL names a file in the data directory: it must exist.
    std::fs::create_dir_all(dir.join("data")).expect("create the data directory");
    let login = match login {
        Some((user, password)) => {
            let file = dir.join("hub-mqtt-password");
            std::fs::write(&file, password).expect("write the hub's broker password");
            format!(
                "username = \"{user}\"\npassword_file = \"{}\"\n",
                file.display()
            )
        }
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{}\"\n[store]\nurl = \"{store_url}\"\n\
             [broker]\nmode = \"external\"\n[broker.external]\nurl = \"{broker_url}\"\n\
             group = \"{group}\"\n{login}\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("data").display(),
        ),
    )
    .expect("write the hub configuration");
    config
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
