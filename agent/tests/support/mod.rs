//! Real parts for the agent's black-box tests: an embedded rumqttd on a free port, a
//! TCP proxy the test can cut and a private Mosquitto (both from `chitti-test-support`),
//! a hub stand-in that commits findings and then acks them
//! (as the real hub does), and the agent binary as a child process.
#![allow(dead_code)] // each test file uses a different part

use chitti_agent::config::{AgentConfig, AgentConfigFile};
use chitti_common::finding::Finding;
use chitti_common::protocol::{Ack, AgentStatus, FindingBatch, Topic, TopicKind};
use chitti_common::signing::ReportKind;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

pub mod broker;
#[allow(unused_imports)] // each test file uses a different part
pub use broker::{free_port, start_rumqttd, wait_for_port};
#[allow(unused_imports)]
pub use chitti_test_support::{CuttableProxy, Mosquitto};

/// Longest any wait in these tests may take before the test fails (a hang guard, not
/// a timing assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(90);

/// What the hub stand-in has committed.
#[derive(Debug, Default, Clone)]
pub struct HubLedger {
    /// Committed findings by id.
    pub findings: HashMap<Uuid, Finding>,
    /// Deliveries of an id already committed (at-least-once on the wire).
    pub duplicate_deliveries: usize,
    /// Batches received.
    pub batches: usize,
    /// Last retained status seen (of any gateway of the site).
    pub status: Option<AgentStatus>,
    /// Last status per gateway.
    pub statuses: HashMap<String, AgentStatus>,
    /// Malformed payloads seen.
    pub malformed: usize,
    /// Last telemetry seen.
    pub telemetry: Option<chitti_common::protocol::Telemetry>,
}

impl HubLedger {
    /// The last status of one gateway.
    pub fn status_of(&self, gateway: &str) -> Option<&AgentStatus> {
        self.statuses.get(gateway)
    }
}

/// The stand-in hub's ack-signing key (fixed: the agents' configurations name its
/// public half, [`TEST_HUB_PUBLIC_KEY`]).
pub fn test_hub_key() -> ed25519_dalek::SigningKey {
    chitti_common::signing::signing_key_from_seed(&[42; 32])
}

/// `mqtt.hub_public_keys` of the agents these tests run: the public half of
/// [`test_hub_key`] (checked by `the_test_hub_key_is_the_one_configured`).
pub const TEST_HUB_PUBLIC_KEY: &str =
    "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";

/// A hub stand-in: subscribes to every gateway's findings and status, "commits" each
/// finding (into the ledger), then acks the batch on the gateway's `/ack` — the
/// contract of DESIGN.md §2.
pub struct TestHub {
    ledger: Arc<Mutex<HubLedger>>,
    changed: watch::Receiver<u64>,
    pub acking: Arc<std::sync::atomic::AtomicBool>,
}

impl TestHub {
    /// Connects to the broker at `port` and serves the gateways of `site` (tests share
    /// the machine's Mosquitto).
    pub async fn start(port: u16, site: &str) -> Self {
        Self::start_inner(port, site, None).await
    }

    /// As [`Self::start`], logging in with a user name and password.
    pub async fn start_with_login(port: u16, site: &str, user: &str, password: &str) -> Self {
        Self::start_inner(port, site, Some((user, password))).await
    }

    async fn start_inner(port: u16, site: &str, login: Option<(&str, &str)>) -> Self {
        let site = site.to_string();
        let mut options = MqttOptions::new(
            format!("test-hub-{}", Uuid::now_v7().simple()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(4 << 20, 4 << 20);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let ledger = Arc::new(Mutex::new(HubLedger::default()));
        let (tx, changed) = watch::channel(0u64);
        let acking = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::channel(8);
        {
            let ledger = Arc::clone(&ledger);
            let acking = Arc::clone(&acking);
            tokio::spawn(async move {
                loop {
                    let event = match eventloop.poll().await {
                        Ok(e) => e,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    match event {
                        // Every (re)connect: a restarted broker has forgotten us.
                        Event::Incoming(Packet::ConnAck(_)) => {
                            for kind in
                                [TopicKind::Findings, TopicKind::Status, TopicKind::Telemetry]
                            {
                                let filter = format!("chitti/v1/{site}/+/{}", kind.suffix());
                                client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
                            }
                        }
                        Event::Incoming(Packet::SubAck(_)) => {
                            let _ = subscribed_tx.try_send(());
                        }
                        Event::Incoming(Packet::Publish(p)) => {
                            let Ok(topic) = Topic::parse(&p.topic) else {
                                continue;
                            };
                            match topic.kind {
                                TopicKind::Findings => {
                                    let Some(batch) = open_findings(&topic, &p.payload) else {
                                        ledger.lock().unwrap().malformed += 1;
                                        continue;
                                    };
                                    if !acking.load(std::sync::atomic::Ordering::SeqCst) {
                                        continue; // a hub that cannot commit does not ack
                                    }
                                    let ids: Vec<Uuid> = {
                                        let mut l = ledger.lock().unwrap();
                                        l.batches += 1;
                                        for f in &batch.findings {
                                            match l.findings.entry(f.id) {
                                                std::collections::hash_map::Entry::Occupied(_) => {
                                                    l.duplicate_deliveries += 1
                                                }
                                                std::collections::hash_map::Entry::Vacant(v) => {
                                                    v.insert(f.clone());
                                                }
                                            }
                                        }
                                        batch.findings.iter().map(|f| f.id).collect()
                                    };
                                    let ack_topic =
                                        Topic::new(&topic.site, &topic.gateway, TopicKind::Ack)
                                            .unwrap()
                                            .to_string();
                                    let ack = chitti_common::signing::sign_ack(
                                        &ack_topic,
                                        &Ack {
                                            batch_id: batch.batch_id,
                                            ids,
                                            signed_at: chrono::Utc::now(),
                                        },
                                        &test_hub_key(),
                                    )
                                    .unwrap();
                                    let _ = client
                                        .publish(ack_topic, QoS::AtLeastOnce, false, ack)
                                        .await;
                                }
                                TopicKind::Telemetry => {
                                    if let Some(t) =
                                        open_report(ReportKind::Telemetry, &topic, &p.payload)
                                    {
                                        ledger.lock().unwrap().telemetry = Some(t);
                                    }
                                }
                                TopicKind::Status => {
                                    if let Some(s) = open_report::<AgentStatus>(
                                        ReportKind::Status,
                                        &topic,
                                        &p.payload,
                                    ) {
                                        let mut l = ledger.lock().unwrap();
                                        l.statuses.insert(topic.gateway.clone(), s.clone());
                                        l.status = Some(s);
                                    }
                                }
                                _ => {}
                            }
                            tx.send_modify(|n| *n += 1);
                        }
                        _ => {}
                    }
                }
            });
        }
        // Both subscriptions acknowledged before the test goes on.
        for _ in 0..3 {
            tokio::time::timeout(HANG_GUARD, subscribed.recv())
                .await
                .expect("hub subscribed");
        }
        Self {
            ledger,
            changed,
            acking,
        }
    }

    /// A copy of the ledger.
    pub fn ledger(&self) -> HubLedger {
        self.ledger.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the ledger (re-checked on every message).
    pub async fn wait_for(&mut self, what: &str, done: impl Fn(&HubLedger) -> bool) -> HubLedger {
        let result = tokio::time::timeout(HANG_GUARD, async {
            loop {
                {
                    let l = self.ledger.lock().unwrap();
                    if done(&l) {
                        return l.clone();
                    }
                }
                self.changed.changed().await.unwrap();
            }
        })
        .await;
        match result {
            Ok(l) => l,
            Err(_) => panic!(
                "hub: timed out waiting for {what}: {:?}",
                summary(&self.ledger())
            ),
        }
    }
}

fn summary(l: &HubLedger) -> String {
    format!(
        "{} findings, {} duplicate deliveries, {} batches, status depth {:?}",
        l.findings.len(),
        l.duplicate_deliveries,
        l.batches,
        l.status
            .as_ref()
            .and_then(|s| s.buffer.as_ref())
            .map(|b| b.depth)
    )
}

/// The agent binary.
/// The ONNX Runtime library the detector tests load: `ORT_DYLIB_PATH`, which
/// tests/run-all.sh exports. Without it these tests fail on purpose, saying how to get it.
pub fn ort_library() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "ORT_DYLIB_PATH is not set: these tests run the real ONNX Runtime. Run \
             `export ORT_DYLIB_PATH=$(models/fetch-onnxruntime.sh)` (tests/run-all.sh does)"
        ),
    }
}

/// The first camera of `config_text` (a simulated one): its scene, and the camera
/// analysis with `detector` and the camera's severity table — frames can be fed to it
/// in-process, without the agent around it.
pub fn simulated_camera_analysis(
    config_text: &str,
    detector: Box<dyn chitti_agent::analysis::Detector>,
) -> (
    chitti_agent::sources::simulated::Scene,
    chitti_agent::analysis::CameraAnalyzer,
) {
    use chitti_agent::sources::simulated::{Scene, SimulatedCamera};
    let config = AgentConfig::from_toml(config_text, "test.toml", Path::new("/")).unwrap();
    let camera = &config.cameras[0];
    let chitti_agent::config::SourceConfig::Simulated(sim) = &camera.source else {
        panic!("the first camera is simulated");
    };
    let scene = Scene::new(SimulatedCamera::from_config(&camera.id, sim)).unwrap();
    let table = config
        .severity_catalog()
        .unwrap()
        .get(config.table_for(camera))
        .unwrap()
        .clone();
    let analyzer = chitti_agent::analysis::CameraAnalyzer::new(
        &config.analysis,
        &config.camera_context(camera),
        table,
        detector,
    );
    (scene, analyzer)
}

/// The `neta-similar` (phase against phase) findings among `findings`: those above their
/// sibling, and the cool exceptions.
pub fn phase_comparisons(findings: &[Finding]) -> (Vec<&Finding>, Vec<&Finding>) {
    findings
        .iter()
        .filter(|f| f.severity.table == "neta-similar")
        .partition(|f| !f.severity.cool_exception)
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chitti-agent"))
}

/// A running agent process.
pub struct AgentProcess {
    pub child: Child,
}

impl AgentProcess {
    /// Starts `chitti-agent run --config <config>`; its log goes to `log`.
    pub fn start(config: &Path, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(agent_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("CHITTI_LOG", "info,chitti_agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child }
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated-camera agent configuration: `frames` frames, produced as fast as the
/// pipeline takes them (none dropped), so the findings are exactly predictable.
pub fn simulated_config(
    site: &str,
    gateway: &str,
    broker_port: u16,
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
resend_after_s = 5
batch_max_findings = 7
[mqtt]
url = "mqtt://127.0.0.1:{broker_port}"
hub_public_keys = ["{TEST_HUB_PUBLIC_KEY}"]
reconnect_min_ms = 50
reconnect_max_ms = 500
[health]
status_interval_s = 1
"#,
        outbox = outbox.display()
    )
}

/// A `/findings` payload: a plain batch, or a signed one that verifies with the key
/// it names (this stand-in has no enrolment to check the key against).
fn open_findings(topic: &Topic, payload: &[u8]) -> Option<FindingBatch> {
    use chitti_common::signing::{open_batch, parse_public_key, SignedBatch};
    if let Ok(batch) = serde_json::from_slice::<FindingBatch>(payload) {
        return Some(batch);
    }
    let envelope: SignedBatch<'_> = serde_json::from_slice(payload).ok()?;
    let key = parse_public_key(&envelope.key).ok()?;
    open_batch(topic, payload, &[key]).ok()
}

/// A `/status` or `/telemetry` as the test hub reads it: plain (a gateway without a
/// key) or signed by the key it names (the hub's key registry is not modelled here).
fn open_report<T: serde::de::DeserializeOwned>(
    kind: chitti_common::signing::ReportKind,
    topic: &Topic,
    payload: &[u8],
) -> Option<T> {
    use chitti_common::signing::{parse_public_key, SignedReport};
    if let Ok(report) = serde_json::from_slice::<T>(payload) {
        return Some(report);
    }
    let envelope: SignedReport<'_> = serde_json::from_slice(payload).ok()?;
    let key = parse_public_key(&envelope.key).ok()?;
    chitti_common::signing::open_report(kind, topic, payload, &[key]).ok()
}

/// What a finding says, without its random ids and clocks: what the tests compare.
pub type FindingShape = (String, String, u8, String);

/// The shape of a finding.
pub fn shape(f: &Finding) -> FindingShape {
    (
        f.camera.clone(),
        format!("{:?}", f.track.state),
        f.severity.level,
        format!("{:.3}", f.hotspot.max_c),
    )
}

/// Runs the configuration's simulated frames through the same analysis in-process:
/// the findings the agent must deliver, as shapes, sorted.
pub fn expected_shapes(config_text: &str) -> Vec<FindingShape> {
    let config = AgentConfig::from_toml(config_text, "expected", Path::new("/")).unwrap();
    let mut shapes: Vec<_> = chitti_agent::topology::predicted_findings(&config)
        .unwrap()
        .iter()
        .map(shape)
        .collect();
    shapes.sort();
    shapes
}

/// The shapes of the ledger's findings, sorted.
pub fn ledger_shapes(l: &HubLedger) -> Vec<FindingShape> {
    let mut v: Vec<_> = l.findings.values().map(shape).collect();
    v.sort();
    v
}

/// The ids of the findings an agent logged as it created them.
pub fn logged_finding_ids(log: &Path) -> std::collections::BTreeSet<Uuid> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(" finding=").nth(1))
        .filter_map(|rest| Uuid::parse_str(rest.split_whitespace().next()?).ok())
        .collect()
}
