//! Benchmark of a configuration change to a fleet (issue #19): how long from one admin
//! action until every gateway reports the new version applied, and what it costs the hub.
//!
//! ```text
//! GATEWAYS=1000 cargo bench -p chitti-hub --bench config_rollout
//! STORE_URL=postgres://postgres@127.0.0.1:5432/chitti_bench GATEWAYS=1000 cargo bench -p chitti-hub --bench config_rollout
//! ```
//!
//! 1. Starts the hub in this process (`chitti_hub::serve::serve`, embedded broker, HTTP on
//!    free ports, SQLite in a temporary folder unless `STORE_URL` names a store), on a
//!    runtime of its own (threads `hub-rt`).
//! 2. Enrols `GATEWAYS` gateways (each its own Ed25519 key) and an admin, who signs in
//!    through the API.
//! 3. Connects the gateways (rumqttc, MQTT 3.1.1, as `{site}/{gateway}`), each subscribed
//!    to its `/config/set`; each reports the configuration it runs on `/config/state`,
//!    signed, as an agent does at start. Waits until the hub has every report.
//! 4. Timed: one `POST /api/v1/gateways/config-changes` for every gateway (a new
//!    `analysis.tracking.raise_after_frames`); each simulated gateway verifies the hub's
//!    signature, validates the document with the agent's code (`chitti_common::
//!    agent_config`) and reports `applied` — what an agent does before restarting its
//!    pipeline (the restart itself is the agent's, seconds, in parallel across gateways).
//!    Measured: the API call, the last gateway receiving its document, and the hub
//!    having stored every `applied` report; CPU time of the hub's threads and of the
//!    load generator's over that window (`/proc/self/task`).

use chitti_common::agent_config::{AgentConfig, TablesOnGateway};
use chitti_common::protocol::{ConfigState, ConfigStatus, TopicKind};
use chitti_common::signing::{open_desired_config, sign_report, ReportKind};
use chitti_hub::config::HubConfig;
use chitti_hub::credentials::hash_password;
use chitti_hub::serve::{serve, Running};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{gateway_username, AnyStore, NewGateway, NewUser, Role};
use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, Semaphore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PASSWORD: &str = "bench-gateway-password";
const ADMIN_PASSWORD: &str = "bench-admin-correct-horse";

#[path = "support/simulated_gateways.rs"]
mod simulated_gateways;

use simulated_gateways::GatewaySpec as Gateway;

/// The configuration a simulated gateway runs before the change.
fn document(g: &Gateway) -> String {
    format!(
            "version = 1\n[identity]\nsite = \"{}\"\ngateway = \"{}\"\n\n[[camera]]\nid = \"cam-1\"\n\n\
             [camera.source]\nkind = \"simulated\"\nfps = 5.0\n\n[analysis.tracking]\nraise_after_frames = 2\n",
            g.site, g.gateway
        )
}

/// Its signed `/config/state` saying `version` (with `config`) is applied.
fn state(g: &Gateway, version: u64, config: &str) -> Vec<u8> {
    let state = ConfigState {
        version,
        status: ConfigStatus::Applied,
        errors: Vec::new(),
        applied_version: (version > 0).then_some(version),
        applied_at: Some(Utc::now()),
        config: Some(config.to_string()),
        ts: Utc::now(),
    };
    sign_report(
        ReportKind::ConfigState,
        &g.topic(TopicKind::ConfigState),
        &state,
        &g.key,
    )
    .expect("a state signs")
}

/// CPU seconds of this process's threads, by whether their name starts with `hub-rt`.
fn cpu_split() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let (mut hub, mut rest) = (0u64, 0u64);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            let t = fields
                .get(11)
                .and_then(|u| u.parse::<u64>().ok())
                .unwrap_or(0)
                + fields
                    .get(12)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
            if name.starts_with("hub-rt") {
                hub += t;
            } else {
                rest += t;
            }
        }
    }
    (hub as f64 / ticks, rest as f64 / ticks)
}

fn main() -> Result<(), BoxError> {
    let gateways: usize = std::env::var("GATEWAYS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1000);
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("hub-rt")
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("loadgen-rt")
        .enable_all()
        .build()?;
    let handle = hub_rt.handle().clone();
    load_rt.block_on(run(gateways, handle))
}

async fn run(gateways: usize, hub_rt: tokio::runtime::Handle) -> Result<(), BoxError> {
    let data_dir = tempfile::tempdir()?;
    let mut config = HubConfig {
        data_dir: data_dir.path().to_path_buf(),
        ..HubConfig::default()
    };
    let store_url = std::env::var("STORE_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.path().join("chitti.db").display()
        )
    });
    config.store.url = Some(store_url.clone());
    config.broker.embedded.listen = "127.0.0.1:0".parse()?;
    config.broker.embedded.max_connections =
        config.broker.embedded.max_connections.max(gateways + 16);
    config.http.listen = "127.0.0.1:0".parse()?;
    let hub_key =
        chitti_hub::hub_key::load_or_create(&chitti_hub::hub_key::path(&config))?.verifying_key();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (started_tx, started_rx) = oneshot::channel::<Running>();
    let hub = hub_rt.spawn(serve(config, stop_rx, Some(started_tx)));
    let running = match started_rx.await {
        Ok(r) => r,
        Err(_) => return Err(format!("the hub did not start: {:?}", hub.await).into()),
    };
    let mqtt = *running.mqtt.first().ok_or("no MQTT listener")?;
    let http = running.http;
    let store = AnyStore::connect(&store_url).await?;

    // Enrolment and the admin.
    let fleet: Vec<Arc<Gateway>> = (0..gateways)
        .map(|i| Arc::new(Gateway::new(i, 0xB7)))
        .collect();
    let hash = hash_password(PASSWORD)?;
    for g in &fleet {
        store
            .add_gateway(&NewGateway {
                site: g.site.clone(),
                gateway: g.gateway.clone(),
                password_hash: hash.clone(),
                public_key: g.key.verifying_key().to_bytes(),
            })
            .await?;
    }
    store
        .add_user(&NewUser {
            username: "bench-admin".into(),
            password_hash: hash_password(ADMIN_PASSWORD)?,
            role: Role::Admin,
        })
        .await?;
    let token = tokio::task::spawn_blocking(move || -> Result<String, BoxError> {
        let text = ureq::post(format!("http://{http}/api/v1/auth/login"))
            .header("content-type", "application/json")
            .send(
                serde_json::json!({"username": "bench-admin", "password": ADMIN_PASSWORD})
                    .to_string(),
            )?
            .body_mut()
            .read_to_string()?;
        let body: serde_json::Value = serde_json::from_str(&text)?;
        Ok(body["token"].as_str().ok_or("no token")?.to_string())
    })
    .await??;

    // The fleet connects and reports what it runs.
    let received = Arc::new(AtomicUsize::new(0));
    let (last_received_tx, last_received) = watch::channel::<Option<Instant>>(None);
    let last_received_tx = Arc::new(last_received_tx);
    let connect_slots = Arc::new(Semaphore::new(64));
    let t = Instant::now();
    let mut connected = Vec::new();
    for g in &fleet {
        let (g, slots) = (Arc::clone(g), Arc::clone(&connect_slots));
        let (received, last) = (Arc::clone(&received), Arc::clone(&last_received_tx));
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let permit = slots.acquire_owned().await;
            let mut options = MqttOptions::new(
                format!("bench-{}-{}", g.site, g.gateway),
                mqtt.ip().to_string(),
                mqtt.port(),
            );
            options
                .set_keep_alive(Duration::from_secs(60))
                .set_credentials(gateway_username(&g.site, &g.gateway), PASSWORD)
                .set_clean_session(true);
            let (client, mut events) = AsyncClient::new(options, 16);
            let mut ready = Some((ready_tx, permit));
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client
                            .subscribe(g.topic(TopicKind::ConfigSet), QoS::AtMostOnce)
                            .await;
                        let _ = client
                            .publish(
                                g.topic(TopicKind::ConfigState),
                                QoS::AtLeastOnce,
                                true,
                                state(&g, 0, &document(&g)),
                            )
                            .await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some((tx, _permit)) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        // What an agent does before its restart: verify, validate, report.
                        let Ok(desired) = open_desired_config(&p.topic, &p.payload, &[hub_key])
                        else {
                            eprintln!("{}: a document that does not verify", g.gateway);
                            continue;
                        };
                        if AgentConfig::parse(
                            &desired.config,
                            "bench",
                            std::path::Path::new("/"),
                            &TablesOnGateway,
                        )
                        .is_err()
                        {
                            eprintln!("{}: an invalid document", g.gateway);
                            continue;
                        }
                        received.fetch_add(1, Ordering::SeqCst);
                        last.send_replace(Some(Instant::now()));
                        let _ = client
                            .publish(
                                g.topic(TopicKind::ConfigState),
                                QoS::AtLeastOnce,
                                true,
                                state(&g, desired.version, &desired.config),
                            )
                            .await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{}: {e}", g.gateway);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        connected.push(ready_rx);
    }
    for ready in connected {
        ready.await?;
    }
    let connect_s = t.elapsed().as_secs_f64();
    let all_reported = |version: i64| {
        let (store, fleet) = (store.clone(), fleet.clone());
        async move {
            loop {
                let mut done = 0;
                for g in &fleet {
                    let r = store.reported_config(&g.site, &g.gateway).await?;
                    if r.is_some_and(|r| r.state.applied_version.unwrap_or(0) as i64 == version) {
                        done += 1;
                    }
                }
                if done == fleet.len() {
                    return Ok::<Instant, BoxError>(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    all_reported(0).await?;
    let initial_s = t.elapsed().as_secs_f64();

    // Timed: one change to every gateway.
    let names: Vec<String> = fleet
        .iter()
        .map(|g| format!("{}/{}", g.site, g.gateway))
        .collect();
    let cpu_before = cpu_split();
    let t0 = Instant::now();
    let answer = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, BoxError> {
        let text = ureq::post(format!("http://{http}/api/v1/gateways/config-changes"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .send(
                serde_json::json!({
                    "target": {"gateways": names},
                    "set": {"analysis.tracking.raise_after_frames": 3},
                    "reason": "benchmark",
                })
                .to_string(),
            )?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    })
    .await??;
    let saved_s = t0.elapsed().as_secs_f64();
    let changed = answer["changes"].as_array().map_or(0, Vec::len);
    if changed != gateways {
        return Err(format!("the change saved {changed} gateways: {answer}").into());
    }
    let done = all_reported(1).await?;
    let cpu_after = cpu_split();
    let all_s = (done - t0).as_secs_f64();
    let last = last_received
        .borrow()
        .map_or(f64::NAN, |l| (l - t0).as_secs_f64());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let engine = store_url.split(':').next().unwrap_or("?");
    println!("config_rollout: a configuration change to {gateways} simulated gateways");
    println!(
        "  machine: {cores} CPUs; store {engine}; embedded broker; hub, broker and load generator in one process"
    );
    println!("  connect {gateways} gateways and store their first reports: {connect_s:.1} s connected, {initial_s:.1} s reported");
    println!("  POST /api/v1/gateways/config-changes (validate {gateways} documents, save in one transaction): {saved_s:.2} s");
    println!("  last gateway received and validated its document: {last:.2} s after the call");
    println!(
        "  every gateway's `applied` stored by the hub: {all_s:.2} s after the call (target < 60 s: {})",
        if all_s < 60.0 { "met" } else { "NOT met" }
    );
    println!(
        "  CPU over that window: hub threads {:.2} s, load generator and the rest {:.2} s",
        cpu_after.0 - cpu_before.0,
        cpu_after.1 - cpu_before.1
    );
    println!("  rerun: GATEWAYS={gateways} cargo bench -p chitti-hub --bench config_rollout");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), hub).await;
    Ok(())
}
