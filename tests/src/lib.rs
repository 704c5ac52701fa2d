//! Helpers shared by the cross-binary scenarios in `tests/tests/`.
//!
//! Scenarios run the real `chitti-agent` and `chitti-hub` executables. Cargo only hands
//! a package the paths of its *own* binaries, so [`binary`] finds the workspace's from
//! the test executable's location (`target/<profile>/deps/…` → `target/<profile>/`)
//! and has the same cargo build them (a no-op when they are up to date).
//!
//! The rest is the one sandbox every scenario starts its world with: processes that are
//! killed when dropped ([`Process`], [`start_hub`], [`start_agent`]), enrolment and
//! configurations, the findings a simulated camera should produce ([`predicted_shapes`]),
//! and [`eventually`] for bounded waits. The plumbing every test crate shares (free
//! ports, [`CuttableProxy`], a scratch Postgres database per test ([`ScratchPostgres`]),
//! brokers of the test's own ([`Mosquitto`], [`NatsServer`], a [`NatsCluster`]), the
//! FLIR [`fixture`]s) comes from `chitti-test-support` and is re-exported here.

pub use chitti_test_support::{
    fixture, free_port, http_get, shipped_nats_node_config, with_nats_gateways, workspace_root,
    CuttableProxy, Mosquitto, NatsCluster, NatsGatewayLogin, NatsNode, NatsNodePorts, NatsServer,
    PostgresHa, ScratchPostgres,
};
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
        <chitti_agent::config::AgentConfig as chitti_agent::config::AgentConfigFile>::from_toml(
            config_text,
            "predicted",
            Path::new("/"),
        )
        .expect("valid agent configuration");
    let mut v: Vec<_> = chitti_agent::topology::predicted_findings(&config)
        .expect("predicted findings")
        .iter()
        .map(shape)
        .collect();
    v.sort();
    v
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

/// One parsed server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Its `id:`.
    pub id: Option<String>,
    /// Its `event:` name.
    pub event: String,
    /// Its `data:`, parsed (`Null` when not JSON).
    pub data: serde_json::Value,
}

/// Subscribes to `GET /api/v1/stream{query}` as `token` (resuming after `last`), reads
/// it on a thread and hands over every event as it arrives.
pub fn subscribe(
    http: std::net::SocketAddr,
    token: &str,
    query: &str,
    last: Option<&str>,
) -> std::sync::mpsc::Receiver<SseEvent> {
    let mut req = ureq::get(format!("http://{http}/api/v1/stream{query}"))
        .header("Authorization", &format!("Bearer {token}"));
    if let Some(l) = last {
        req = req.header("Last-Event-ID", l);
    }
    let response = req.call().expect("stream");
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if !event.is_empty() {
                    let parsed = SseEvent {
                        id: id.take(),
                        event: std::mem::take(&mut event),
                        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    };
                    if tx.send(parsed).is_err() {
                        return;
                    }
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    });
    rx
}

/// `GET http://{http}{path}` as `token` (a bearer token); the JSON answer.
pub fn api_get(http: std::net::SocketAddr, token: &str, path: &str) -> serde_json::Value {
    let text = ureq::get(format!("http://{http}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Accept", "application/json")
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
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
    let login = login_lines(dir, "hub-mqtt-password", login);
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

/// The `username` and `password_file` lines of a broker section for `login` (user,
/// password), the password written to `file` in `dir`; nothing without a login.
fn login_lines(dir: &Path, file: &str, login: Option<(&str, &str)>) -> String {
    match login {
        Some((user, password)) => {
            let file = dir.join(file);
            std::fs::write(&file, password).expect("write the hub's broker password");
            format!(
                "username = \"{user}\"\npassword_file = \"{}\"\n",
                file.display()
            )
        }
        None => String::new(),
    }
}

/// A hub configuration in `dir` for replica `name` in NATS mode on the nodes at
/// `servers` (NATS) and `mqtt_urls` (their MQTT listeners), with its own MQTT client id,
/// as `login` (user, password) when given, one stream copy per node up to three, and
/// the store at `store_url`; its path. Replicas share the data directory (one signing
/// key).
pub fn nats_hub_config(
    dir: &Path,
    store_url: &str,
    (servers, mqtt_urls): (Vec<String>, Vec<String>),
    name: &str,
    login: Option<(&str, &str)>,
) -> PathBuf {
    let config = dir.join(format!("hub-{name}.toml"));
    std::fs::create_dir_all(dir.join("data")).expect("create the data directory");
    let list = |urls: Vec<String>| {
        urls.iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let login = login_lines(dir, &format!("hub-{name}-nats-password"), login);
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{data}\"\n[store]\nurl = \"{store_url}\"\n\
             [broker]\nmode = \"nats\"\n[broker.nats]\nservers = [{servers}]\n\
             mqtt_urls = [{mqtt}]\nreplicas = {replicas}\nack_wait_s = 5\n\
             client_id = \"chitti-hub-{name}\"\n{login}\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            data = dir.join("data").display(),
            replicas = servers.len().min(3),
            servers = list(servers.clone()),
            mqtt = list(mqtt_urls),
        ),
    )
    .expect("write the hub configuration");
    config
}

/// A counter or gauge on a hub's `/metrics` (0 when absent).
pub fn metric(http: std::net::SocketAddr, name: &str) -> f64 {
    let text = ureq::get(format!("http://{http}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The MQTT password `gateway add` wrote into a gateway's credentials folder.
pub fn mqtt_password(credentials: &Path) -> String {
    std::fs::read_to_string(credentials.join("mqtt-password"))
        .expect("the gateway's mqtt-password")
        .trim()
        .to_string()
}

/// A model file shipped in `models/chitti-components-v1/`.
pub fn shipped_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/chitti-components-v1")
        .join(name)
}

/// Uploads `model` to the hub's registry with the manifest `chitti-agent
/// model-manifest` writes for it (two reference frames, this `version`), as an admin
/// would; the registry's answer (201 asserted).
pub fn upload_model(
    http: std::net::SocketAddr,
    token: &str,
    model: &Path,
    version: &str,
) -> serde_json::Value {
    const BOUNDARY: &str = "chitti-e2e-model-7c2d";
    let out = Command::new(binary("chitti-agent"))
        .args([
            "model-manifest",
            "--frames",
            "2",
            "--version",
            version,
            "--model",
        ])
        .arg(model)
        .output()
        .expect("chitti-agent model-manifest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(&out.stdout);
    body.extend_from_slice(
        format!(
            "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"; \
             filename=\"model.onnx\"\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&std::fs::read(model).expect("model file"));
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let mut r = ureq::post(format!("http://{http}/api/v1/models"))
        .header("authorization", format!("Bearer {token}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .config()
        .http_status_as_error(false)
        .build()
        .send(&body[..])
        .expect("POST /api/v1/models");
    let text = r.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(r.status(), 201, "{text}");
    serde_json::from_str(&text).expect("registry answer")
}

/// A hub's `[notifications]` section: every hotspot and cool-exception alert to a
/// webhook `scada` (signed with `secret`) and PagerDuty `on-call`, both at the given
/// receiver URLs; the notifier polls every `poll_ms` and leases claims for `lease_s`.
pub fn webhook_and_pagerduty(
    webhook: &str,
    pagerduty: &str,
    secret: &str,
    poll_ms: u64,
    lease_s: u64,
) -> String {
    format!(
        r#"[notifications]
poll_interval_ms = {poll_ms}
claim_lease_s = {lease_s}
send_timeout_s = 2
[[notifications.channels]]
id = "scada"
kind = "webhook"
url = "{webhook}"
secret = "{secret}"
[[notifications.channels]]
id = "on-call"
kind = "pagerduty"
url = "{pagerduty}"
routing_key = "R0UT1NGK3Y"
[[notifications.rules]]
id = "everything"
min_level = 0
kinds = ["hotspot", "cool_exception"]
channels = ["scada", "on-call"]
"#
    )
}

/// A simulated agent configuration made a paced camera (40 frames/s, `frames` frames),
/// so that a fault lands in the middle of its stream.
pub fn paced(text: String, frames: u64) -> String {
    let paced = text
        .replace("fps = 1.0\nspeed = 20.0", "fps = 40.0\nspeed = 800.0")
        .replace("unpaced = true", "unpaced = false")
        .replace("frames = 60", &format!("frames = {frames}"));
    assert!(paced.contains("unpaced = false"), "{paced}");
    paced
}

/// `GET /readyz`: its status code (0 when nothing answers).
pub fn readyz(http: std::net::SocketAddr) -> u16 {
    match ureq::get(format!("http://{http}/readyz")).call() {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(_) => 0,
    }
}

/// `GET /readyz` answers 200.
pub fn ready(http: std::net::SocketAddr) -> bool {
    readyz(http) == 200
}

/// Whether `gateway` of north-yard is done: its camera finished, the store holds at
/// least as many findings as `agent` logged making, and its outbox is empty (all
/// acknowledged).
pub async fn agent_drained(
    store: &chitti_hub::store::AnyStore,
    gateway: &str,
    agent: &Process,
) -> bool {
    use chitti_hub::store::prelude::*;
    let (Ok(cameras), Ok(stored), Ok(Some(g))) = (
        store.list_cameras("north-yard", gateway).await,
        store.count_findings().await,
        store.gateway("north-yard", gateway).await,
    ) else {
        return false;
    };
    let made = logged_finding_ids(&agent.log_text()).len();
    cameras.iter().any(|c| c.state == "finished")
        && made > 0
        && stored as usize >= made
        && g.buffer.is_some_and(|b| b.depth == 0)
}

/// Waits until every notification of the store is sent, then asserts each went out
/// once per id: every webhook message (channel `scada`) delivered to `receiver` under
/// its id, and one PagerDuty incident (`on-call`) per alert of `alerts`. The
/// notifications and how many webhook deliveries arrived (a repeat of an id counts).
pub async fn assert_notified_once(
    store: &chitti_hub::store::AnyStore,
    receiver: &chitti_test_support::HttpReceiver,
    alerts: &[chitti_hub::store::AlertRecord],
    context: impl Fn() -> String,
) -> (Vec<chitti_hub::store::NotificationRecord>, usize) {
    use chitti_hub::store::prelude::*;
    use std::collections::HashSet;
    eventually("every notification sent", context, || async {
        let log = store.list_notifications(None, false, 5000).await.ok()?;
        (log.len() >= 2 * alerts.len()
            && log
                .iter()
                .all(|n| n.status == chitti_hub::store::NotificationStatus::Sent))
        .then_some(())
    })
    .await;
    let log = store.list_notifications(None, false, 5000).await.unwrap();
    let webhooks = receiver.taken("webhook");
    let delivered: HashSet<String> = webhooks
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    let sent: HashSet<String> = log
        .iter()
        .filter(|n| n.channel == "scada")
        .map(|n| n.id.to_string())
        .collect();
    assert_eq!(
        delivered, sent,
        "every webhook message delivered, under its id"
    );
    let keys: HashSet<String> = receiver
        .taken("pagerduty")
        .iter()
        .map(|r| r.body["dedup_key"].as_str().unwrap().to_string())
        .collect();
    let ids: HashSet<String> = alerts.iter().map(|a| a.id.to_string()).collect();
    assert_eq!(keys, ids, "one PagerDuty incident per alert");
    (log, webhooks.len())
}
