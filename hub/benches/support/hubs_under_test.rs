//! The hubs `benches/ingest_load.rs` drives: one inside the benchmark's process
//! (`chitti_hub::serve::serve` on a runtime of its own, the embedded broker), or `HUBS`
//! `chitti-hub serve` processes (this build's binary) on the embedded broker or on a
//! NATS cluster of the benchmark's own (`BROKER=nats`, the shipped
//! `deploy/brokers/nats/cluster.conf` with one login per gateway). Processes are what a
//! fleet runs, and their CPU and memory can be read apart from the load generator's.

use chitti_hub::config::{BrokerMode, HubConfig};
use chitti_hub::serve::{serve, Running};
use chitti_test_support::{shipped_nats_node_config, NatsCluster, NatsGatewayLogin};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The NATS user the hub replicas log in as (the shipped configuration's).
const HUB_USER: &str = "chitti-hub";
const HUB_PASSWORD: &str = "ingest-load-bench-hub-password";

/// Where the hubs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One hub in the benchmark's process (`HUBS=0`).
    InProcess,
    /// `n` `chitti-hub serve` processes.
    Processes(usize),
}

/// The broker the gateways and hubs meet at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// The hub's embedded rumqttd (one hub).
    Embedded,
    /// A NATS cluster of `nodes` nodes with JetStream, the stream replicated
    /// `min(nodes, 3)` times.
    Nats { nodes: usize },
}

/// A hub in this process: its shutdown signal and its task.
type InProcessHub = (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), chitti_hub::serve::ServeError>>,
);

/// One `chitti-hub serve` process, killed on drop.
pub struct HubProcess {
    child: Child,
    /// Its process id (for `/proc`).
    pub pid: u32,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running hubs.
pub struct HubsUnderTest {
    /// MQTT listeners the gateways connect to (gateway `g` to `mqtt[g % len]`).
    pub mqtt: Vec<SocketAddr>,
    /// Each hub's HTTP listener (`/metrics`).
    pub http: Vec<SocketAddr>,
    /// The hub processes (empty for [`Placement::InProcess`]).
    pub processes: Vec<HubProcess>,
    /// The NATS cluster's node processes (empty on the embedded broker).
    pub nats_pids: Vec<u32>,
    /// What runs, in words, for the report.
    pub description: String,
    in_process: Option<InProcessHub>,
    // Held only to be dropped (its nodes killed), and declared last: after the hubs.
    _cluster: Option<NatsCluster>,
}

impl HubsUnderTest {
    /// Starts the hubs with `config` (store, ingest and HTTP settings made by the
    /// caller; the broker section is set here): `gateways` are the logins a NATS
    /// cluster must accept.
    pub async fn start(
        placement: Placement,
        broker: Broker,
        mut config: HubConfig,
        gateways: &[NatsGatewayLogin],
        hub_rt: &tokio::runtime::Handle,
        dir: &Path,
    ) -> Result<Self, BoxError> {
        let mut cluster = None;
        let mut nats_pids = Vec::new();
        let mut mqtt = Vec::new();
        let broker_words = match broker {
            Broker::Embedded => {
                config.broker.mode = BrokerMode::Embedded;
                format!(
                    "embedded broker (rumqttd, log {} MiB per filter)",
                    config.broker.embedded.log_bytes.map_or_else(
                        || chitti_hub::broker::embedded::log_bytes_for(
                            config.broker.embedded.max_connections
                        ),
                        |b| b.0 as usize
                    ) >> 20
                )
            }
            Broker::Nats { nodes } => {
                let started = Instant::now();
                // The machine may run a NATS of its own: the cluster's nodes are the
                // nats-server processes that were not there before.
                let before = pids_named("nats-server");
                let c = tokio::task::block_in_place(|| {
                    NatsCluster::start_with(dir, nodes, Some((HUB_USER, HUB_PASSWORD)), |node| {
                        shipped_nats_node_config(node, gateways, HUB_PASSWORD)
                    })
                });
                let password_file = dir.join("hub-nats-password");
                std::fs::write(&password_file, HUB_PASSWORD)?;
                let n = &mut config.broker.nats;
                config.broker.mode = BrokerMode::Nats;
                n.servers = c.nats_urls();
                n.mqtt_urls = c.mqtt_urls();
                n.replicas = nodes.min(3);
                n.username = Some(HUB_USER.into());
                n.password_file = Some(password_file);
                mqtt = c
                    .ports()
                    .iter()
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], p.mqtt)))
                    .collect();
                let words = format!(
                    "NATS cluster of {nodes} nodes ({}, shipped cluster.conf, {} gateway logins; JetStream stream R{}, started in {:.1} s)",
                    nats_version(),
                    gateways.len(),
                    nodes.min(3),
                    started.elapsed().as_secs_f64()
                );
                cluster = Some(c);
                nats_pids = pids_named("nats-server")
                    .into_iter()
                    .filter(|p| !before.contains(p))
                    .collect();
                words
            }
        };
        match placement {
            Placement::InProcess => {
                let (stop_tx, stop_rx) = watch::channel(false);
                let (started_tx, started_rx) = oneshot::channel::<Running>();
                let task = hub_rt.spawn(serve(config, stop_rx, Some(started_tx)));
                let running = match started_rx.await {
                    Ok(r) => r,
                    Err(_) => return Err(format!("the hub did not start: {:?}", task.await).into()),
                };
                if broker == Broker::Embedded {
                    mqtt = running.mqtt.clone();
                }
                Ok(Self {
                    mqtt,
                    http: vec![running.http],
                    processes: Vec::new(),
                    nats_pids,
                    description: format!("one hub in the benchmark's process, {broker_words}"),
                    in_process: Some((stop_tx, task)),
                    _cluster: cluster,
                })
            }
            Placement::Processes(n) => {
                let mut processes = Vec::new();
                let mut http = Vec::new();
                for i in 0..n {
                    let mut replica = config.clone();
                    replica.broker.nats.client_id = Some(format!("chitti-hub-bench-{i}"));
                    let path = dir.join(format!("hub-{i}.toml"));
                    std::fs::write(&path, toml::to_string(&replica)?)?;
                    let (process, addrs) =
                        tokio::task::block_in_place(|| start_process(&path, dir, i))?;
                    if broker == Broker::Embedded {
                        mqtt.extend(addrs.0);
                    }
                    http.push(addrs.1);
                    processes.push(process);
                }
                Ok(Self {
                    mqtt,
                    http,
                    processes,
                    nats_pids,
                    description: format!(
                        "{n} `chitti-hub serve` process{} (this build, {}), {broker_words}",
                        if n == 1 { "" } else { "es" },
                        env!("CARGO_BIN_EXE_chitti-hub")
                    ),
                    in_process: None,
                    _cluster: cluster,
                })
            }
        }
    }

    /// Stops the hubs (SIGTERM to processes, the shutdown signal in process) and waits
    /// up to 15 s each; the NATS cluster stays until drop.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.in_process.take() {
            let _ = stop.send(true);
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                other => eprintln!("hub did not stop cleanly: {other:?}"),
            }
        }
        for p in &mut self.processes {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match p.child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        eprintln!("hub pid {} exited {status}; log {}", p.pid, p.log.display());
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    _ => {
                        eprintln!("hub pid {} did not stop within 15 s: killed", p.pid);
                        let _ = p.child.kill();
                        break;
                    }
                }
            }
        }
    }
}

/// Starts `chitti-hub serve --config PATH` and reads the line that says where it
/// listens: (MQTT listeners, HTTP listener).
fn start_process(
    config: &Path,
    dir: &Path,
    index: usize,
) -> Result<(HubProcess, (Vec<SocketAddr>, SocketAddr)), BoxError> {
    let log = dir.join(format!("hub-{index}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_chitti-hub"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env(
            "CHITTI_LOG",
            std::env::var("CHITTI_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let process = HubProcess { child, pid, log };
    let line = lines.next().transpose()?.unwrap_or_default();
    // Keep reading what else it prints, so that it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let Some(rest) = line.strip_prefix("chitti-hub listening: mqtt ") else {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        return Err(format!("hub {index} did not start: {line:?}\n{log}").into());
    };
    let (mqtt, http) = rest.trim().split_once(" http ").ok_or("mqtt … http …")?;
    let mqtt = mqtt.split(',').filter_map(|a| a.parse().ok()).collect();
    Ok((process, (mqtt, http.parse()?)))
}

/// Ids of the processes whose `comm` is `name`.
fn pids_named(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

fn nats_version() -> String {
    Command::new("nats-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "nats-server".into(), |v| v.trim().to_string())
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`); 0 when gone.
pub fn status_kib(pid: &str, field: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
