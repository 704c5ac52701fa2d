//! The whole agent as a process: a simulated 640×480 camera at 30 fps (no detector),
//! real-time, publishing to an embedded rumqttd with a hub stand-in that acks.
//! Prints CPU time per frame, RSS (current and peak), frames and drops, and the
//! publish latency of findings (hub receive time − the finding's `observed_at`).
//!
//! Run: `cargo bench -p chitti-agent --bench agent_process` (DURATION_S=20 by default).
//! Not a criterion benchmark: one process, measured from outside through /proc.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[path = "../tests/support/broker.rs"]
mod broker;
use broker::{free_port, start_rumqttd};

/// The bench hub's ack-signing key seed (the agent is told its public half).
const BENCH_HUB_SEED: [u8; 32] = [7; 32];

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn metric(port: u16, name: &str) -> f64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends
    }
    let duration = Duration::from_secs(
        std::env::var("DURATION_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    let port = start_rumqttd();
    let metrics_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let hub_key = chitti_common::signing::public_key_hex(
        &chitti_common::signing::signing_key_from_seed(&BENCH_HUB_SEED).verifying_key(),
    );
    std::fs::write(
        &config,
        format!(
            r#"
version = 1
[identity]
site = "bench"
gateway = "gw-1"
[[camera]]
id = "sim-1"
[camera.source]
kind = "simulated"
width = 640
height = 480
fps = 30.0
speed = 10.0
[outbox]
path = "{}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
hub_public_keys = ["{hub_key}"]
[health]
metrics_listen = "127.0.0.1:{metrics_port}"
"#,
            dir.path().join("outbox").display()
        ),
    )
    .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let latencies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    {
        let latencies = latencies.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let mut o = MqttOptions::new("bench-hub", "127.0.0.1", port);
            o.set_max_packet_size(4 << 20, 4 << 20);
            let (client, mut el) = AsyncClient::new(o, 100);
            client
                .subscribe("chitti/v1/bench/+/findings", QoS::AtLeastOnce)
                .await
                .unwrap();
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = chrono::Utc::now();
                        let Ok(batch) = serde_json::from_slice::<
                            chitti_common::protocol::FindingBatch,
                        >(&p.payload) else {
                            continue;
                        };
                        let ids = batch.findings.iter().map(|f| f.id).collect();
                        {
                            let mut l = latencies.lock().unwrap();
                            for f in &batch.findings {
                                l.push(
                                    (now - f.observed_at).num_microseconds().unwrap_or(0) as f64
                                        / 1000.0,
                                );
                            }
                        }
                        // Signed as the hub signs (the agent believes nothing else).
                        let ack = chitti_common::signing::sign_ack(
                            "chitti/v1/bench/gw-1/ack",
                            &chitti_common::protocol::Ack {
                                batch_id: batch.batch_id,
                                ids,
                                signed_at: now,
                            },
                            &chitti_common::signing::signing_key_from_seed(&BENCH_HUB_SEED),
                        )
                        .unwrap();
                        let _ = client
                            .publish("chitti/v1/bench/gw-1/ack", QoS::AtLeastOnce, false, ack)
                            .await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }

    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("CHITTI_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = agent.id();
    // Warm-up: tables built, broker connected, first frames through.
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, frames0, drops0, t0) = (
        cpu_seconds(pid),
        metric(metrics_port, "chitti_agent_frames_total{"),
        metric(metrics_port, "chitti_agent_frame_drops_total{"),
        Instant::now(),
    );
    latencies.lock().unwrap().clear();
    std::thread::sleep(duration);
    let (cpu1, frames1, drops1, elapsed) = (
        cpu_seconds(pid),
        metric(metrics_port, "chitti_agent_frames_total{"),
        metric(metrics_port, "chitti_agent_frame_drops_total{"),
        t0.elapsed().as_secs_f64(),
    );
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();

    let frames = frames1 - frames0;
    let cpu = cpu1 - cpu0;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("agent process: simulated 640x480 camera at 30 fps (scene speed 10), no detector, embedded rumqttd, hub stand-in acking");
    println!(
        "  measured over     {elapsed:.1} s after a 2 s warm-up, on {} CPU(s)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  frames            {frames:.0} analysed ({:.1} fps), {:.0} dropped",
        frames / elapsed,
        drops1 - drops0
    );
    println!("  CPU               {cpu:.2} s = {:.2} ms per frame ({:.0} % of one core), incl. rendering the synthetic scene", cpu / frames * 1000.0, cpu / elapsed * 100.0);
    println!(
        "  RSS               {:.1} MiB now, {:.1} MiB peak",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("  publish latency   {} findings: median {:.1} ms, p95 {:.1} ms, max {:.1} ms (observed_at -> hub receive)", lat.len(), pick(0.5), pick(0.95), lat.last().copied().unwrap_or(f64::NAN));
    println!(
        "  rerun: cargo bench -p chitti-agent --bench agent_process   (DURATION_S={})",
        duration.as_secs()
    );
}
