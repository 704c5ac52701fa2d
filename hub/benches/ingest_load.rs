//! Load benchmark of the hub's ingest: many simulated gateways publishing signed finding
//! batches over MQTT to an in-process hub (embedded broker, Postgres store, signatures
//! required), against `COPY` of the same rows as the physical limit.
//!
//! ```text
//! GATEWAYS=1000 FINDINGS=200000 BATCH=50 WINDOW=2 cargo bench -p chitti-hub --bench ingest_load
//! # the fleet at a steady rate (issue #6): 1000 gateways × 1 finding/s for 3 minutes
//! GATEWAYS=1000 FINDINGS=180000 BATCH=1 RATE=1 RAMP_MS=1000 cargo bench -p chitti-hub --bench ingest_load
//! # the hub as a process of its own; two replicas on a 3-node NATS cluster (issue #20)
//! HUBS=1 cargo bench -p chitti-hub --bench ingest_load
//! HUBS=2 BROKER=nats cargo bench -p chitti-hub --bench ingest_load
//! ```
//!
//! `HUBS=0` (the default) runs the hub inside this process; `HUBS=n` runs `n`
//! `chitti-hub serve` processes (this build's binary), whose CPU time and resident
//! memory are then read apart from the load generator's. `BROKER=embedded` (default,
//! one hub) or `BROKER=nats`: a NATS cluster of `NATS_NODES` (3) nodes started by the
//! benchmark from the shipped `deploy/brokers/nats/cluster.conf`, the gateways spread
//! over its nodes' MQTT listeners, the hubs sharing the JetStream work-queue consumer.
//!
//! With `RATE` (batches per second per gateway) each gateway publishes on a fixed
//! schedule instead of as fast as its window allows; the figures are then ack latency
//! at a given load, CPU and memory, not the saturation rate. Memory is the process's
//! resident set (hub, broker and the load generator together) sampled every 250 ms.
//!
//! 1. Creates a scratch database `chitti_bench_<random>` through the admin URL
//!    (`CHITTI_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//!    and starts the hub with `chitti_hub::serve::serve` on free ports (MQTT and HTTP on
//!    127.0.0.1:0), on a tokio runtime of its own (threads `hub-rt`).
//! 2. Enrols `GATEWAYS` gateways through the store, each with its own Ed25519 key (seeded
//!    from its index) and one shared argon2 password hash.
//! 3. Signs all `FINDINGS` findings into batches of `BATCH` (batch `k` belongs to gateway
//!    `k % GATEWAYS`) before anything is timed: real gateways sign on their own CPUs.
//! 4. Connects the gateways (rumqttc, MQTT 3.1.1, user `{site}/{gateway}`, keep-alive
//!    30 s), at most `CONNECT_CONCURRENCY` (default 64) handshakes at a time, each
//!    subscribed to its `/ack`; the hub verifies each password once (argon2), so this
//!    measures 1000 argon2 verifications plus the MQTT handshakes.
//! 5. Every gateway publishes its batches (QoS 1) with at most `WINDOW` unacknowledged
//!    ones, all starting at once (or spread over `RAMP_MS`, default 0); nothing is
//!    re-published, a batch not acked within `ACK_TIMEOUT_S` (60) is
//!    counted lost. Measured: first publish → last ack (findings/s), per-batch ack
//!    latency (handed to the MQTT client → ack received), the hub's commits from
//!    `/metrics`, and CPU per thread group (`/proc`), Postgres and the rest of the machine.
//! 6. Stops the hub and `COPY`s the same rows into `findings_copy` (`LIKE findings
//!    INCLUDING ALL`) as one stream, checks that `findings` holds exactly `FINDINGS`
//!    rows, prints everything and drops the database.

#[path = "support/copy_rows.rs"]
mod copy_rows;
#[path = "support/hubs_under_test.rs"]
mod hubs_under_test;
#[path = "support/simulated_gateways.rs"]
mod simulated_gateways;

use chitti_common::protocol::{FindingBatch, TopicKind};
use chitti_common::signing::open_ack;
use chitti_common::signing::sign_batch;
use chitti_hub::config::HubConfig;
use chitti_hub::credentials::hash_password;
use chitti_hub::store::prelude::*;
use chitti_hub::store::{gateway_username, IngestedFinding, NewGateway, PgStore, StoreOptions};
use chitti_test_support::NatsGatewayLogin;
use chrono::Utc;
use copy_rows::{copy_batches, sample};
use ed25519_dalek::VerifyingKey;
use hubs_under_test::{status_kib, Broker, HubsUnderTest, Placement};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use simulated_gateways::GatewaySpec;
use sqlx::Connection;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The password every simulated gateway logs in with.
const PASSWORD: &str = "ingest-load-bench-password";

/// Tracks (alerts) per gateway.
const TRACKS_PER_GATEWAY: usize = 4;

/// The issue's targets.
const TARGET_FINDINGS_PER_S: f64 = 20_000.0;
const TARGET_COPY_RATIO: f64 = 0.5;
const TARGET_GATEWAYS: usize = 1000;

#[derive(Debug, Clone)]
struct Settings {
    gateways: usize,
    findings: usize,
    batch: usize,
    window: usize,
    connect_concurrency: usize,
    ack_timeout: Duration,
    ramp: Duration,
    /// Batches per second per gateway (0: as fast as the window allows).
    rate: f64,
    /// Where the hubs run (`HUBS`).
    placement: Placement,
    /// The broker (`BROKER`, `NATS_NODES`).
    broker: Broker,
    /// The embedded broker's log per filter, MiB (`LOG_MIB`; default: sized from
    /// `max_connections`).
    log_mib: Option<usize>,
}

fn env_usize(name: &str, default: usize) -> Result<usize, BoxError> {
    match std::env::var(name) {
        Ok(v) => Ok(v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|e| format!("{name}={v:?}: {e}"))?),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self, BoxError> {
        let s = Self {
            gateways: env_usize("GATEWAYS", 1000)?,
            findings: env_usize("FINDINGS", 200_000)?,
            batch: env_usize("BATCH", 50)?,
            window: env_usize("WINDOW", 2)?,
            connect_concurrency: env_usize("CONNECT_CONCURRENCY", 64)?,
            ack_timeout: Duration::from_secs(env_usize("ACK_TIMEOUT_S", 60)? as u64),
            ramp: Duration::from_millis(env_usize("RAMP_MS", 0)? as u64),
            rate: match std::env::var("RATE") {
                Ok(v) => v.trim().parse().map_err(|e| format!("RATE={v:?}: {e}"))?,
                Err(_) => 0.0,
            },
            placement: match env_usize("HUBS", 0)? {
                0 => Placement::InProcess,
                n => Placement::Processes(n),
            },
            broker: match std::env::var("BROKER").as_deref() {
                Err(_) | Ok("embedded") => Broker::Embedded,
                Ok("nats") => Broker::Nats {
                    nodes: env_usize("NATS_NODES", 3)?,
                },
                Ok(other) => return Err(format!("BROKER={other:?}: embedded or nats").into()),
            },
            log_mib: match std::env::var("LOG_MIB") {
                Ok(_) => Some(env_usize("LOG_MIB", 0)?),
                Err(_) => None,
            },
        };
        match (s.placement, s.broker) {
            (Placement::Processes(n), Broker::Embedded) if n > 1 => {
                return Err("HUBS > 1 needs BROKER=nats (each embedded broker is its own)".into())
            }
            (_, Broker::Nats { nodes: 0 }) => return Err("NATS_NODES must be at least 1".into()),
            _ => {}
        }
        if !(s.rate >= 0.0 && s.rate.is_finite()) {
            return Err("RATE must be a number ≥ 0 (batches per second per gateway)".into());
        }
        if s.gateways == 0 || s.findings == 0 || s.batch == 0 || s.window == 0 {
            return Err("GATEWAYS, FINDINGS, BATCH and WINDOW must be at least 1".into());
        }
        if s.connect_concurrency == 0 {
            return Err("CONNECT_CONCURRENCY must be at least 1".into());
        }
        Ok(s)
    }

    fn rerun(&self) -> String {
        let ramp = if self.ramp.is_zero() {
            String::new()
        } else {
            format!("RAMP_MS={} ", self.ramp.as_millis())
        };
        let ramp = if self.rate > 0.0 {
            format!("{ramp}RATE={} ", self.rate)
        } else {
            ramp
        };
        let hubs = match self.placement {
            Placement::InProcess => String::new(),
            Placement::Processes(n) => format!("HUBS={n} "),
        };
        let broker = match self.broker {
            Broker::Embedded => String::new(),
            Broker::Nats { nodes } => format!("BROKER=nats NATS_NODES={nodes} "),
        };
        let broker = match self.log_mib {
            Some(mib) => format!("{broker}LOG_MIB={mib} "),
            None => broker,
        };
        format!(
            "{hubs}{broker}GATEWAYS={} FINDINGS={} BATCH={} WINDOW={} {ramp}cargo bench -p chitti-hub --bench ingest_load",
            self.gateways, self.findings, self.batch, self.window
        )
    }
}

/// A scratch database, dropped on drop (also when the run fails).
struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create() -> Result<Self, BoxError> {
        let admin = std::env::var("CHITTI_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("chitti_bench_{}", Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let root = admin.rsplit_once('/').map(|(r, _)| r).unwrap_or(&admin);
        let url = format!("{root}/{name}");
        Ok(Self { admin, name, url })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime: use a small one on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// One simulated gateway.
/// A signed batch ready to publish.
struct Prepared {
    first_id: Uuid,
    findings: usize,
    payload: Vec<u8>,
}

/// What a gateway's event loop hands to its publisher.
enum GatewayEvent {
    /// An `/ack` naming this first id arrived at this instant.
    Ack(Uuid, Instant),
    /// The connection failed (no reconnect in the benchmark).
    Closed(String),
}

#[derive(Default)]
struct GatewayResult {
    latencies: Vec<Duration>,
    ack_times: Vec<Instant>,
    first_publish: Option<Instant>,
    last_ack: Option<Instant>,
    acked_batches: usize,
    acked_findings: usize,
    lost_batches: usize,
    stray_acks: usize,
    closed: Option<String>,
}

/// Connects one gateway and subscribes it to its `/ack`; returns when the SUBACK is in.
async fn connect_gateway(
    addr: SocketAddr,
    spec: &GatewaySpec,
) -> Result<(AsyncClient, EventLoop), String> {
    let mut options = MqttOptions::new(
        format!("bench-{}-{}", spec.site, spec.gateway),
        addr.ip().to_string(),
        addr.port(),
    );
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_credentials(gateway_username(&spec.site, &spec.gateway), PASSWORD)
        .set_max_packet_size(2 << 20, 2 << 20)
        .set_clean_session(true);
    let (client, mut events) = AsyncClient::new(options, 16);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("connect: {e}")),
        }
    }
    client
        .subscribe(spec.topic(TopicKind::Ack), QoS::AtLeastOnce)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        match events.poll().await {
            // A clustered broker may refuse a QoS 1 subscription while JetStream is
            // busy (NATS: "Unable to add JetStream consumer"): without it no ack would
            // ever arrive. Agents drop such a link and connect again; so does this.
            Ok(Event::Incoming(Packet::SubAck(a)))
                if a.return_codes
                    .contains(&rumqttc::SubscribeReasonCode::Failure) =>
            {
                return Err(format!("subscribe refused: {:?}", a.return_codes))
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => return Ok((client, events)),
            Ok(_) => {}
            Err(e) => return Err(format!("subscribe: {e}")),
        }
    }
}

/// Drives a connected event loop: acks (verified against the hub's key, as an agent
/// does) go to the publisher, the first error ends it.
async fn drive(
    mut events: EventLoop,
    tx: mpsc::UnboundedSender<GatewayEvent>,
    hub_key: VerifyingKey,
) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let at = Instant::now();
                match open_ack(&p.topic, &p.payload, &[hub_key]) {
                    Ok(ack) => {
                        if let Some(first) = ack.ids.first() {
                            let _ = tx.send(GatewayEvent::Ack(*first, at));
                        }
                    }
                    Err(e) => eprintln!("unreadable ack on {}: {e}", p.topic),
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(GatewayEvent::Closed(e.to_string()));
                return;
            }
        }
    }
}

/// One connected gateway, ready to publish.
struct Publisher {
    client: AsyncClient,
    /// Its `/findings` topic.
    topic: String,
    /// Acks and connection loss from its event loop.
    events: mpsc::UnboundedReceiver<GatewayEvent>,
    batches: Vec<Prepared>,
    /// Wait after the start signal (`RAMP_MS`).
    start_delay: Duration,
}

/// Publishes a gateway's batches with at most `window` unacknowledged.
async fn publish_all(
    gw: Publisher,
    window: usize,
    ack_timeout: Duration,
    interval: Option<Duration>,
    mut go: watch::Receiver<bool>,
) -> GatewayResult {
    let Publisher {
        client,
        topic,
        mut events,
        batches,
        start_delay,
    } = gw;
    let mut r = GatewayResult::default();
    let _ = go.wait_for(|g| *g).await;
    tokio::time::sleep(start_delay).await;
    let started = tokio::time::Instant::now();
    let mut published = 0u32;
    let mut remaining = batches.into_iter().peekable();
    // (first id, findings, handed to the client at)
    let mut pending: VecDeque<(Uuid, usize, Instant)> = VecDeque::new();
    loop {
        while pending.len() < window {
            // Paced: the next batch is due at start + k × interval; wait for it while
            // still taking acks (below) — a fleet at a steady rate, not a burst.
            if let Some(every) = interval {
                let due = started + every * published;
                if remaining.peek().is_some() && tokio::time::Instant::now() < due {
                    if pending.is_empty() {
                        tokio::time::sleep_until(due).await;
                    } else {
                        break;
                    }
                }
            }
            let Some(b) = remaining.next() else { break };
            published += 1;
            let sent = Instant::now();
            r.first_publish.get_or_insert(sent);
            if let Err(e) = client
                .publish(topic.clone(), QoS::AtLeastOnce, false, b.payload)
                .await
            {
                r.closed = Some(format!("publish: {e}"));
                r.lost_batches += 1 + pending.len() + remaining.len();
                return r;
            }
            pending.push_back((b.first_id, b.findings, sent));
        }
        let Some(oldest) = pending.iter().map(|p| p.2).min() else {
            return r;
        };
        let mut deadline = tokio::time::Instant::from_std(oldest + ack_timeout);
        if let (Some(every), true) = (interval, remaining.peek().is_some()) {
            // Wake for the next due batch too (the timeout branch drops nothing early).
            deadline = deadline.min(started + every * published);
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(GatewayEvent::Ack(first, at))) => {
                match pending.iter().position(|p| p.0 == first) {
                    Some(i) => {
                        let (_, n, sent) = pending.remove(i).expect("position is valid");
                        r.latencies.push(at.saturating_duration_since(sent));
                        r.ack_times.push(at);
                        r.last_ack = Some(r.last_ack.map_or(at, |l| l.max(at)));
                        r.acked_batches += 1;
                        r.acked_findings += n;
                    }
                    None => r.stray_acks += 1,
                }
            }
            Ok(Some(GatewayEvent::Closed(e))) => {
                r.closed = Some(e);
                r.lost_batches += pending.len() + remaining.len();
                return r;
            }
            Ok(None) => {
                r.closed = Some("event loop gone".into());
                r.lost_batches += pending.len() + remaining.len();
                return r;
            }
            Err(_) => {
                let now = Instant::now();
                let before = pending.len();
                pending.retain(|p| now.duration_since(p.2) < ack_timeout);
                r.lost_batches += before - pending.len();
            }
        }
    }
}

/// `GET /metrics` on the hub's HTTP listener, as name → value (unlabelled series).
async fn scrape(http: SocketAddr) -> Result<HashMap<String, f64>, BoxError> {
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// Seconds since the start signal, and each hub process's resident memory then (KiB).
type RssSample = (f64, Vec<usize>);

/// Every hub's `/metrics`, summed by name.
async fn scrape_all(hubs: &[SocketAddr]) -> Result<HashMap<String, f64>, BoxError> {
    let mut sum = HashMap::new();
    for h in hubs {
        for (name, v) in scrape(*h).await? {
            *sum.entry(name).or_insert(0.0) += v;
        }
    }
    Ok(sum)
}

/// CPU time (clock ticks) of this process' threads by name, of the hub processes, of
/// Postgres' processes and the benchmark's NATS nodes, and of the whole machine.
#[derive(Default, Clone)]
struct CpuSnapshot {
    threads: HashMap<u32, (String, u64)>,
    hubs: Vec<u64>,
    postgres: HashMap<u32, u64>,
    nats: HashMap<u32, u64>,
    process: u64,
    machine_busy: u64,
}

/// `(comm, utime + stime)` from a `/proc/.../stat` file.
fn proc_stat(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After the comm: state is field 3 of stat(5), utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn numeric_entries(dir: &str) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl CpuSnapshot {
    fn take(hub_pids: &[u32], nats_pids: &[u32]) -> Self {
        let ticks = |p: &u32| proc_stat(&format!("/proc/{p}/stat")).map_or(0, |v| v.1);
        let mut s = Self {
            hubs: hub_pids.iter().map(ticks).collect(),
            nats: nats_pids.iter().map(|p| (*p, ticks(p))).collect(),
            ..Self::default()
        };
        for tid in numeric_entries("/proc/self/task") {
            if let Some(v) = proc_stat(&format!("/proc/self/task/{tid}/stat")) {
                s.threads.insert(tid, v);
            }
        }
        for pid in numeric_entries("/proc") {
            if let Some((comm, t)) = proc_stat(&format!("/proc/{pid}/stat")) {
                if comm == "postgres" {
                    s.postgres.insert(pid, t);
                }
            }
        }
        s.process = proc_stat("/proc/self/stat").map_or(0, |v| v.1);
        if let Ok(text) = std::fs::read_to_string("/proc/stat") {
            if let Some(line) = text.lines().next() {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal: busy = all but idle, iowait.
                let all: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                s.machine_busy = all.saturating_sub(idle);
            }
        }
        s
    }

    /// Thread group of a thread name (`comm` is cut at 15 bytes).
    fn group(comm: &str) -> &'static str {
        match comm {
            "hub-rt" => "hub tokio runtime (ingest, auth/argon2, HTTP, sqlx)",
            "loadgen-rt" => "load generator (rumqttc clients)",
            "chitti-mqtt-tc" | "chitti-mqtt-tcp" => "rumqttd listener (all MQTT connections)",
            c if c.starts_with("router") => "rumqttd router",
            c if c.starts_with("chitti-hub-link") => "hub link bridge threads (rx, tx)",
            _ => "other threads (main, timers)",
        }
    }

    /// CPU seconds since `before`: per thread group, Postgres, this process, machine.
    fn since(&self, before: &Self, tick: f64) -> CpuReport {
        let mut groups: HashMap<&'static str, f64> = HashMap::new();
        for (tid, (comm, t)) in &self.threads {
            let t0 = before.threads.get(tid).map_or(0, |v| v.1);
            *groups.entry(Self::group(comm)).or_default() += t.saturating_sub(t0) as f64 / tick;
        }
        let sum_since = |now: &HashMap<u32, u64>, then: &HashMap<u32, u64>| -> u64 {
            now.iter()
                .map(|(pid, t)| t.saturating_sub(then.get(pid).copied().unwrap_or(0)))
                .sum()
        };
        let postgres = sum_since(&self.postgres, &before.postgres);
        let nats = sum_since(&self.nats, &before.nats);
        let hubs = self
            .hubs
            .iter()
            .zip(&before.hubs)
            .map(|(now, then)| now.saturating_sub(*then) as f64 / tick)
            .collect();
        let mut groups: Vec<(&'static str, f64)> = groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuReport {
            groups,
            hubs,
            nats: nats as f64 / tick,
            postgres: postgres as f64 / tick,
            process: self.process.saturating_sub(before.process) as f64 / tick,
            machine: self.machine_busy.saturating_sub(before.machine_busy) as f64 / tick,
        }
    }
}

struct CpuReport {
    groups: Vec<(&'static str, f64)>,
    /// Each hub process, in order.
    hubs: Vec<f64>,
    nats: f64,
    postgres: f64,
    process: f64,
    machine: f64,
}

impl CpuReport {
    fn print(&self, wall_s: f64) {
        let row = |what: &str, s: f64| {
            println!(
                "    {what:<52} {s:>7.2} CPU-s  {:>5.2} cores",
                s / wall_s.max(1e-9)
            );
        };
        for (g, s) in &self.groups {
            row(g, *s);
        }
        row("= this process", self.process);
        for (i, h) in self.hubs.iter().enumerate() {
            row(&format!("hub process {i}"), *h);
        }
        if self.nats > 0.0 {
            row("nats-server (all nodes)", self.nats);
        }
        row("postgres (all its processes)", self.postgres);
        let known = self.process + self.hubs.iter().sum::<f64>() + self.nats + self.postgres;
        row(
            "rest of the machine (other processes)",
            (self.machine - known).max(0.0),
        );
        row("= machine busy", self.machine);
    }
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// This process's resident memory, KiB (`VmRSS`).
fn rss_kib() -> usize {
    status_kib("self", "VmRSS:")
}

fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("hub-rt")
        .enable_all()
        .build()?;
    let loadgen_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("loadgen-rt")
        .enable_all()
        .build()?;
    let result = loadgen_rt.block_on(async {
        let db = ScratchDb::create().await?;
        let result = run(&settings, &db.url, hub_rt.handle()).await;
        drop(db);
        result
    });
    hub_rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn run(
    settings: &Settings,
    url: &str,
    hub_rt: &tokio::runtime::Handle,
) -> Result<(), BoxError> {
    let tick = clock_ticks();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let data_dir = tempfile::tempdir()?;
    let mut config = HubConfig {
        data_dir: data_dir.path().to_path_buf(),
        ..HubConfig::default()
    };
    config.store.url = Some(url.to_string());
    config.broker.embedded.listen = "127.0.0.1:0".parse()?;
    config.broker.embedded.max_connections = config
        .broker
        .embedded
        .max_connections
        .max(settings.gateways + 16);
    config.http.listen = "127.0.0.1:0".parse()?;
    config.ingest.require_signatures = true;
    // The key the hub signs its acks with (made here, loaded by the hub from the same
    // file), so that the gateways verify every ack as agents do.
    let hub_key =
        chitti_hub::hub_key::load_or_create(&chitti_hub::hub_key::path(&config))?.verifying_key();
    // The embedded broker's in-memory log per filter (hub/src/broker/embedded.rs).
    if let Some(mib) = settings.log_mib {
        config.broker.embedded.log_bytes = Some(chitti_hub::config::ByteSize((mib as u64) << 20));
    }
    let log_bytes = config.broker.embedded.log_bytes.map_or_else(
        || chitti_hub::broker::embedded::log_bytes_for(config.broker.embedded.max_connections),
        |b| b.0 as usize,
    );
    let hub_settings = format!(
        "commit_max_findings={} commit_max_wait_ms={} queue={} pool={}",
        config.ingest.commit_max_findings,
        config.ingest.commit_max_wait_ms,
        config.ingest.queue,
        config.store.max_connections
    );

    // 1. The hubs (and the NATS cluster, which must know every gateway's login).
    let specs: Vec<GatewaySpec> = (0..settings.gateways)
        .map(|i| GatewaySpec::new(i, 0xC4))
        .collect();
    let logins: Vec<NatsGatewayLogin> = specs
        .iter()
        .map(|s| NatsGatewayLogin::new(&s.site, &s.gateway, PASSWORD))
        .collect();
    let rss_before_hub = rss_kib();
    let mut hubs = HubsUnderTest::start(
        settings.placement,
        settings.broker,
        config,
        &logins,
        hub_rt,
        data_dir.path(),
    )
    .await?;
    if hubs.mqtt.is_empty() {
        return Err("the hubs report no MQTT listener".into());
    }
    let mqtt = Arc::new(hubs.mqtt.clone());
    let hub_pids: Vec<u32> = hubs.processes.iter().map(|p| p.pid).collect();
    let nats_pids = hubs.nats_pids.clone();
    let rss_hubs_started: Vec<usize> = hub_pids
        .iter()
        .map(|p| status_kib(&p.to_string(), "VmRSS:"))
        .collect();

    let store = PgStore::connect(url, &StoreOptions::default()).await?;
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(store.pool())
        .await?;
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(store.pool())
        .await?;

    // 2. Enrolment.
    let t = Instant::now();
    let password_hash = hash_password(PASSWORD)?;
    let hash_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for s in &specs {
        store
            .add_gateway(&NewGateway {
                site: s.site.clone(),
                gateway: s.gateway.clone(),
                password_hash: password_hash.clone(),
                public_key: s.key.verifying_key().to_bytes(),
            })
            .await?;
    }
    let enrol_s = t.elapsed().as_secs_f64();

    // 3. Signed batches, before anything is timed.
    let t = Instant::now();
    let tracks: Vec<Uuid> = (0..settings.gateways * TRACKS_PER_GATEWAY)
        .map(|_| Uuid::now_v7())
        .collect();
    let received_at = Utc::now();
    let mut per_gateway: Vec<Vec<Prepared>> = (0..settings.gateways).map(|_| Vec::new()).collect();
    let mut rows: Vec<IngestedFinding> = Vec::with_capacity(settings.findings);
    let mut payload_bytes = 0usize;
    let batches = settings.findings.div_ceil(settings.batch);
    for k in 0..batches {
        let g = k % settings.gateways;
        let spec = &specs[g];
        let findings: Vec<_> = (k * settings.batch
            ..((k + 1) * settings.batch).min(settings.findings))
            .map(|i| {
                let mut f = sample(i, tracks[g * TRACKS_PER_GATEWAY + i % TRACKS_PER_GATEWAY]);
                f.site.clone_from(&spec.site);
                f.gateway.clone_from(&spec.gateway);
                f
            })
            .collect();
        let batch = FindingBatch {
            batch_id: Uuid::now_v7(),
            sent_at: Utc::now(),
            findings,
        };
        let payload = sign_batch(&spec.topic(TopicKind::Findings), &batch, &spec.key)?;
        payload_bytes += payload.len();
        per_gateway[g].push(Prepared {
            first_id: batch.findings[0].id,
            findings: batch.findings.len(),
            payload,
        });
        rows.extend(batch.findings.into_iter().map(|finding| IngestedFinding {
            finding,
            received_at,
            batch_id: batch.batch_id,
        }));
    }
    let finding_json = serde_json::to_string(&rows[0].finding)?.len();
    let prepare_s = t.elapsed().as_secs_f64();

    // 4. Connect.
    let cpu_before_connect = CpuSnapshot::take(&hub_pids, &nats_pids);
    let handshakes = Arc::new(Semaphore::new(settings.connect_concurrency));
    let retries = Arc::new(AtomicUsize::new(0));
    let specs = Arc::new(specs);
    let t = Instant::now();
    let connecting: Vec<_> = (0..settings.gateways)
        .map(|g| {
            let (handshakes, retries, specs, mqtt) = (
                handshakes.clone(),
                retries.clone(),
                specs.clone(),
                mqtt.clone(),
            );
            tokio::spawn(async move {
                let _turn = handshakes.acquire_owned().await.expect("semaphore open");
                let mut last = String::new();
                for attempt in 0..3 {
                    if attempt > 0 {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    match tokio::time::timeout(
                        Duration::from_secs(30),
                        connect_gateway(mqtt[g % mqtt.len()], &specs[g]),
                    )
                    .await
                    {
                        Ok(Ok((client, events))) => {
                            let (tx, rx) = mpsc::unbounded_channel();
                            let driver = tokio::spawn(drive(events, tx, hub_key));
                            return Ok((client, rx, driver));
                        }
                        Ok(Err(e)) => last = e,
                        Err(_) => last = "no CONNACK/SUBACK within 30 s".into(),
                    }
                }
                Err(format!("gateway {g}: {last}"))
            })
        })
        .collect();
    let mut connected = Vec::with_capacity(settings.gateways);
    let mut connect_failures = Vec::new();
    for c in connecting {
        match c.await? {
            Ok(v) => connected.push(Some(v)),
            Err(e) => {
                connect_failures.push(e);
                connected.push(None);
            }
        }
    }
    let connect_s = t.elapsed().as_secs_f64();
    let cpu_connect = CpuSnapshot::take(&hub_pids, &nats_pids).since(&cpu_before_connect, tick);
    let connected_n = connected.iter().filter(|c| c.is_some()).count();

    // 5. Publish.
    let metrics_before = scrape_all(&hubs.http).await?;
    let (go_tx, go_rx) = watch::channel(false);
    let mut publishers = Vec::new();
    let mut drivers = Vec::new();
    let mut unconnected_batches = 0usize;
    for ((g, batches), c) in per_gateway.into_iter().enumerate().zip(connected) {
        match c {
            Some((client, rx, driver)) => {
                drivers.push(driver);
                let gw = Publisher {
                    client,
                    topic: specs[g].topic(TopicKind::Findings),
                    events: rx,
                    batches,
                    start_delay: settings.ramp.mul_f64(g as f64 / settings.gateways as f64),
                };
                publishers.push(tokio::spawn(publish_all(
                    gw,
                    settings.window,
                    settings.ack_timeout,
                    (settings.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / settings.rate)),
                    go_rx.clone(),
                )));
            }
            None => unconnected_batches += batches.len(),
        }
    }
    let cpu_before = CpuSnapshot::take(&hub_pids, &nats_pids);
    let cpu_since = Instant::now();
    let load_before = load_average();
    let rss_connected = rss_kib();
    let rss_hubs_connected: Vec<usize> = hub_pids
        .iter()
        .map(|p| status_kib(&p.to_string(), "VmRSS:"))
        .collect();
    // Resident memory every 250 ms while the fleet publishes: this process, then each
    // hub process.
    let rss_peaks: Arc<Vec<AtomicUsize>> = Arc::new(
        std::iter::once(rss_connected)
            .chain(rss_hubs_connected.iter().copied())
            .map(AtomicUsize::new)
            .collect(),
    );
    // The hub processes' resident memory over time: (seconds since the start, KiB each).
    let rss_timeline: Arc<std::sync::Mutex<Vec<RssSample>>> = Arc::default();
    let sampler = {
        let peak = Arc::clone(&rss_peaks);
        let timeline = Arc::clone(&rss_timeline);
        let pids: Vec<String> = std::iter::once("self".to_string())
            .chain(hub_pids.iter().map(u32::to_string))
            .collect();
        tokio::spawn(async move {
            let since = Instant::now();
            loop {
                let now: Vec<usize> = pids.iter().map(|pid| status_kib(pid, "VmRSS:")).collect();
                for (p, kib) in peak.iter().zip(&now) {
                    p.fetch_max(*kib, Ordering::Relaxed);
                }
                timeline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((since.elapsed().as_secs_f64(), now[1..].to_vec()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let _ = go_tx.send(true);
    let mut results = Vec::with_capacity(publishers.len());
    for p in publishers {
        results.push(p.await?);
    }
    sampler.abort();
    let rss_peak = rss_peaks[0].load(Ordering::Relaxed).max(rss_kib());
    let rss_hubs_peak: Vec<usize> = hub_pids
        .iter()
        .enumerate()
        .map(|(i, p)| {
            rss_peaks[i + 1]
                .load(Ordering::Relaxed)
                .max(status_kib(&p.to_string(), "VmRSS:"))
        })
        .collect();
    let rss_hubs_hwm: Vec<usize> = hub_pids
        .iter()
        .map(|p| status_kib(&p.to_string(), "VmHWM:"))
        .collect();
    let rss_nats: Option<usize> = (!nats_pids.is_empty()).then(|| {
        nats_pids
            .iter()
            .map(|p| status_kib(&p.to_string(), "VmRSS:"))
            .sum()
    });
    let cpu_publish = CpuSnapshot::take(&hub_pids, &nats_pids);
    let cpu_s = cpu_since.elapsed().as_secs_f64();
    let metrics_after = scrape_all(&hubs.http).await?;
    let load_after = load_average();
    for d in &drivers {
        d.abort();
    }

    let first = results.iter().filter_map(|r| r.first_publish).min();
    let last = results.iter().filter_map(|r| r.last_ack).max();
    let wall_s = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let cpu_publish = cpu_publish.since(&cpu_before, tick);
    let acked_findings: usize = results.iter().map(|r| r.acked_findings).sum();
    let acked_batches: usize = results.iter().map(|r| r.acked_batches).sum();
    let lost: usize = results.iter().map(|r| r.lost_batches).sum::<usize>() + unconnected_batches;
    let stray: usize = results.iter().map(|r| r.stray_acks).sum();
    let closed: Vec<&String> = results.iter().filter_map(|r| r.closed.as_ref()).collect();
    let mut latencies: Vec<Duration> = results
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let ingest_rate = acked_findings as f64 / wall_s.max(1e-9);
    // With lost batches the wall time includes the wait for their timeout (their
    // gateways stall that long): also the rate of what was acked before the first
    // timeout could fire.
    let early = first.map(|f| {
        let cut = f + settings.ack_timeout;
        let times: Vec<Instant> = results
            .iter()
            .flat_map(|r| r.ack_times.iter().copied())
            .filter(|t| *t < cut)
            .collect();
        let last = times
            .iter()
            .max()
            .map_or(0.0, |l| l.duration_since(f).as_secs_f64());
        (times.len(), last)
    });
    let delta = |name: &str| {
        metrics_after.get(name).copied().unwrap_or(0.0)
            - metrics_before.get(name).copied().unwrap_or(0.0)
    };
    let commits = delta("chitti_hub_commits_total");
    let committed = delta("chitti_hub_committed_findings_total");
    let commit_s = delta("chitti_hub_commit_seconds_total");
    let hub_acks = delta("chitti_hub_acks_total");
    let hub_ack_s = delta("chitti_hub_ack_latency_seconds_total");
    let messages = delta("chitti_hub_messages_total");
    let store_errors = delta("chitti_hub_store_errors_total");
    let dead: f64 = metrics_after
        .iter()
        .filter(|(k, _)| k.starts_with("chitti_hub_dead_letters_total"))
        .fold(0.0, |a, (_, v)| a + v);

    // Stop the hubs before the COPY so that it has the machine to itself.
    hubs.stop().await;
    let hubs_description = hubs.description.clone();
    drop(hubs);

    // 6. The physical limit: one COPY stream of the same rows.
    sqlx::query("CREATE TABLE findings_copy (LIKE findings INCLUDING ALL)")
        .execute(store.pool())
        .await?;
    let t = Instant::now();
    let copied = copy_batches(&store, &rows, rows.len()).await;
    let copy_s = t.elapsed().as_secs_f64();
    let copy_rate = copied as f64 / copy_s;
    let stored = store.count_findings().await?;
    store.close().await;

    // Report.
    let s = settings;
    let ratio = ingest_rate / copy_rate;
    println!();
    println!("# chitti-hub ingest load benchmark");
    println!(
        "machine: {cores} CPUs (nproc), {}, {:.1} GiB RAM; Postgres {server} (synchronous_commit={sync}) on the same machine",
        cpu_model(),
        mem_total_gib()
    );
    println!(
        "         load generator, rumqttd, hub and Postgres share these {cores} CPUs; load average {load_before} before, {load_after} after"
    );
    println!(
        "input:   {} gateways, {} findings in {} batches of {} (one finding's JSON = {finding_json} bytes, mean signed payload {:.0} bytes), window {} unacked batches per gateway, starts spread over {} ms (RAMP_MS)",
        s.gateways,
        s.findings,
        batches,
        s.batch,
        payload_bytes as f64 / batches as f64,
        s.window,
        s.ramp.as_millis()
    );
    println!(
        "hub:     {hubs_description}; Postgres store, require_signatures=true, {hub_settings}"
    );
    println!("rerun:   {}", s.rerun());
    println!();
    println!("setup (not timed in the rates):");
    println!(
        "  one argon2 hash_password:            {:>8.1} ms",
        hash_s * 1e3
    );
    println!(
        "  enrol {} gateways (add_gateway):    {:>8.2} s",
        s.gateways, enrol_s
    );
    println!(
        "  sign {batches} batches:                 {:>8.2} s",
        prepare_s
    );
    println!();
    println!(
        "connect: {connected_n}/{} gateways connected and subscribed in {connect_s:.2} s ({:.1} ms each; {} at a time; {} retries; {} failed)",
        s.gateways,
        connect_s * 1e3 / s.gateways as f64,
        s.connect_concurrency,
        retries.load(Ordering::Relaxed),
        connect_failures.len()
    );
    for e in connect_failures.iter().take(5) {
        println!("  failure: {e}");
    }
    println!("  CPU during connect ({connect_s:.2} s; argon2 runs on the hub runtime's blocking threads):");
    cpu_connect.print(connect_s);
    println!();
    if s.rate > 0.0 {
        println!(
            "ingest at a fixed rate: each gateway {:.2} batches/s = {:.0} findings/s offered in all, for {:.0} s:",
            s.rate,
            s.rate * (s.gateways * s.batch) as f64,
            s.findings as f64 / (s.rate * (s.gateways * s.batch) as f64)
        );
    }
    println!("ingest (first publish → last ack, {wall_s:.2} s):");
    println!(
        "  acked:        {acked_findings} findings in {acked_batches} batches → {ingest_rate:.0} findings/s ({:.0} batches/s)",
        acked_batches as f64 / wall_s.max(1e-9)
    );
    println!("  lost:         {lost} batches not acked within {} s (nothing re-published); {stray} stray acks; {} connections closed", s.ack_timeout.as_secs(), closed.len());
    for c in closed.iter().take(5) {
        println!("  closed: {c}");
    }
    if lost > 0 {
        let (n, secs) = early.unwrap_or_default();
        println!(
            "  LOST BATCHES: the rate above includes their {} s timeout; before it, {n} batches were acked in {secs:.2} s → {:.0} findings/s",
            s.ack_timeout.as_secs(),
            (n * s.batch) as f64 / secs.max(1e-9)
        );
        println!(
            "  the embedded broker keeps {:.0} MiB per topic filter (4 segments, hub/src/broker/embedded.rs) ≈ {:.0} batches of this size; the gateways can have {} batches ({:.0} MiB) in flight: a hub link that falls further behind skips ahead (rumqttd logs \"Read cursor start jumped\")",
            log_bytes as f64 / (1 << 20) as f64,
            log_bytes as f64 / (payload_bytes as f64 / batches as f64),
            s.gateways * s.window,
            (s.gateways * s.window) as f64 * (payload_bytes as f64 / batches as f64) / (1 << 20) as f64
        );
    }
    println!(
        "  ack latency:  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (publish handed to the client → ack received, {} batches)",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len()
    );
    println!(
        "  hub /metrics: {messages:.0} messages, {commits:.0} commits, {committed:.0} findings committed = {:.0} findings per commit; commits took {commit_s:.2} s ({:.0} % of the wall time, {:.1} ms each); receive → ack in the hub {:.1} ms mean over {hub_acks:.0} acks; {store_errors:.0} store errors; {dead:.0} dead letters",
        committed / commits.max(1.0),
        100.0 * commit_s / wall_s.max(1e-9),
        1e3 * commit_s / commits.max(1.0),
        1e3 * hub_ack_s / hub_acks.max(1.0)
    );
    println!(
        "  CPU from the start signal until every gateway was done ({cpu_s:.2} s{}):",
        if lost > 0 {
            ", including the wait for lost batches"
        } else {
            ""
        }
    );
    cpu_publish.print(cpu_s);
    let mib = |kib: usize| kib as f64 / 1024.0;
    if hub_pids.is_empty() {
        println!(
            "  memory (this process: hub, embedded broker and the load generator's clients): {:.0} MiB before the hub started, {:.0} MiB with every gateway connected, {:.0} MiB peak while publishing → the hub and broker grew by at most {:.0} MiB under load",
            mib(rss_before_hub),
            mib(rss_connected),
            mib(rss_peak),
            mib(rss_peak.saturating_sub(rss_connected))
        );
    } else {
        for (i, pid) in hub_pids.iter().enumerate() {
            println!(
                "  memory of hub process {i} (pid {pid}, resident): {:.0} MiB started, {:.0} MiB with every gateway connected, {:.0} MiB peak while publishing (sampled every 250 ms), {:.0} MiB high-water mark (VmHWM)",
                mib(rss_hubs_started[i]),
                mib(rss_hubs_connected[i]),
                mib(rss_hubs_peak[i]),
                mib(rss_hubs_hwm[i])
            );
        }
        // Ten points along the run: does it level off?
        let timeline = rss_timeline.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..hub_pids.len() {
            let points: Vec<String> = (0..=10)
                .filter_map(|k| timeline.get((timeline.len().saturating_sub(1)) * k / 10))
                .map(|(t, kib)| format!("{t:.0} s {:.0}", mib(kib[i])))
                .collect();
            println!(
                "  memory of hub process {i} over the run (MiB): {}",
                points.join(" · ")
            );
        }
        println!(
            "  memory of the load generator (this process, {} clients and the pre-signed batches): {:.0} MiB connected, {:.0} MiB peak",
            settings.gateways,
            mib(rss_connected),
            mib(rss_peak)
        );
    }
    if let Some(nats) = rss_nats {
        println!(
            "  memory of the NATS nodes (resident, all together, after publishing): {:.0} MiB",
            mib(nats)
        );
    }
    println!();
    println!(
        "COPY:    {copied} rows into findings_copy in one stream in {copy_s:.2} s → {copy_rate:.0} findings/s (text built and sent by this process)"
    );
    println!(
        "check:   findings table holds {stored} findings (expected {}): {}",
        s.findings,
        if stored == s.findings as u64 {
            "ok"
        } else {
            "MISMATCH"
        }
    );
    println!();
    if s.rate > 0.0 {
        println!(
            "fixed rate: {:.0} findings/s offered, {ingest_rate:.0} findings/s acked; every batch acked: {}",
            s.rate * (s.gateways * s.batch) as f64,
            verdict(lost == 0)
        );
    } else {
        println!("targets (from the issue) and verdict:");
        println!(
            "  ≥ {TARGET_FINDINGS_PER_S:.0} findings/s on 2 cores:            {ingest_rate:>8.0} findings/s on {cores} cores → {}",
            verdict(ingest_rate >= TARGET_FINDINGS_PER_S)
        );
        println!(
            "  ≥ {:.0} % of COPY:                         {:>8.0} % ({ingest_rate:.0} / {copy_rate:.0}) → {}",
            TARGET_COPY_RATIO * 100.0,
            ratio * 100.0,
            verdict(ratio >= TARGET_COPY_RATIO)
        );
        println!(
            "  {TARGET_GATEWAYS} gateways on the broker:               {connected_n:>8} connected → {}",
            verdict(connected_n >= TARGET_GATEWAYS)
        );
        println!(
            "  no batch lost:                            {lost:>8} lost → {}",
            verdict(lost == 0)
        );
        println!(
            "  anchor: ThingsBoard ~1 000 messages/s on 2 vCPU with Postgres; here {:.0} messages/s of {} findings ({:.0} findings/s)",
            acked_batches as f64 / wall_s.max(1e-9),
            s.batch,
            ingest_rate
        );
    }
    if stored != s.findings as u64 {
        return Err(format!(
            "the database holds {stored} findings, expected {}",
            s.findings
        )
        .into());
    }
    Ok(())
}
