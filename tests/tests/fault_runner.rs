//! The fault runner (issue #20): the fleet shape of DESIGN §6 on real engines under a
//! steady load, with faults injected in turn, each by SIGKILL or a cut:
//!
//! - three `nats-server` nodes (the shipped `cluster.conf`, a block per gateway);
//! - Postgres 15 under Patroni 3.0: a primary and a synchronous standby, etcd, HAProxy
//!   (the shipped `deploy/postgres/` files);
//! - two `chitti-hub serve` replicas in NATS mode, replica B reaching the brokers and
//!   the database only through proxies the runner can cut (its network partition);
//! - [`GATEWAYS`] simulated gateways in this process (MQTT 3.1.1 to the NATS nodes,
//!   signed batches, the agent's rules: a batch is deleted only when its signed `/ack`
//!   names it, resent after [`RESEND_AFTER`], failover to the next node with a
//!   jittered backoff, a new link after three resend periods without any answer);
//! - a webhook and PagerDuty receiver (real HTTP) for every alert, and a live-stream
//!   client on each replica.
//!
//! Faults, in turn, each after the fleet has recovered from the one before: hub
//! replica A killed (and restarted), a broker node killed (and restarted), the
//! Postgres primary's machine killed (the standby is promoted; the old node rejoins),
//! replica B partitioned from brokers and database for [`PARTITION`] (and healed).
//! A fault's recovery time is from the fault to the moment every finding outstanding
//! at the fault is acknowledged.
//!
//! Asserted, against what the gateways hold as acknowledged: every finding made is
//! stored, none lost and none twice; every alert has exactly one PagerDuty incident and
//! every notification was delivered under its id; B's live stream, cut from the
//! database's relay by the partition, said `resync`; after the faults each replica's
//! live stream shows every alert that changes. The figures are printed (rerun:
//! `cargo nextest run -p chitti-e2e --test fault_runner --no-capture`).

#[allow(dead_code)]
#[path = "../../hub/benches/support/copy_rows.rs"]
mod copy_rows;

use chitti_common::protocol::{FindingBatch, Topic, TopicKind};
use chitti_common::signing::{open_ack, sign_batch, signing_key_from_seed};
use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AlertQuery, AnyStore, NewGateway};
use chitti_test_support::HttpReceiver;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Simulated gateways.
const GATEWAYS: usize = 50;
/// Findings per batch.
const BATCH: usize = 2;
/// A gateway's period between batches (jittered ±25 %): the fleet offers 50 findings/s.
const PERIOD: Duration = Duration::from_millis(2000);
/// Unacknowledged batches are sent again after this (the agent's `resend_after_s`,
/// 60 s by default; shorter here so that a run stays short).
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// The stream's redelivery time for a replica's unacknowledged messages
/// (`broker.nats.ack_wait_s`, 30 s by default).
const ACK_WAIT_S: u64 = 15;
/// Steady load before the first fault and after each recovery, in seconds
/// (`FAULT_RUNNER_HOLD_S`, default 10): longer runs soak each state.
fn hold() -> Duration {
    Duration::from_secs(
        std::env::var("FAULT_RUNNER_HOLD_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    )
}
/// Longest a fault's recovery may take before the runner fails (a hang guard).
const RECOVERY_GUARD: Duration = Duration::from_secs(300);
/// How long replica B stays cut off.
const PARTITION: Duration = Duration::from_secs(15);
/// Tracks (alerts) per gateway.
const TRACKS: usize = 2;
const SITE: &str = "fleet-yard";
const HUB_PASSWORD: &str = "hub-secret";
const GATEWAY_PASSWORD: &str = "fault-runner-gateway";

/// What one gateway made and what was acknowledged, by finding id.
#[derive(Default)]
struct Ledger {
    made: BTreeSet<Uuid>,
    acked: BTreeSet<Uuid>,
    /// First publish → ack, per batch, with the time of the ack.
    latencies: Vec<(Instant, Duration)>,
    connects: usize,
    /// What happened to its links, for a failure's report: (when, what).
    events: Vec<(Instant, String)>,
}

/// A batch waiting for its ack.
struct Unacked {
    ids: Vec<Uuid>,
    payload: Vec<u8>,
    first_sent: Instant,
    last_sent: Instant,
}

/// A small deterministic jitter source per gateway (no shared RNG needed).
struct Jitter(u64);
impl Jitter {
    fn next(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn around(&mut self, d: Duration, spread: f64) -> Duration {
        d.mul_f64(1.0 - spread + 2.0 * spread * self.next())
    }
}

/// One simulated gateway: connects to `nodes[start]`, fails over in order, publishes
/// a batch per period until `making` is false, resends what is unacknowledged, and ends
/// once nothing is left unacknowledged after `making` went false.
async fn gateway(
    index: usize,
    nodes: Vec<(String, u16)>,
    hub_key: ed25519_dalek::VerifyingKey,
    making: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let name = format!("gw-{index}");
    let mut seed = [0xFA; 32];
    seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
    let key = signing_key_from_seed(&seed);
    let topic = |k| Topic::new(SITE, &name, k).unwrap().to_string();
    let tracks: Vec<Uuid> = (0..TRACKS).map(|_| Uuid::now_v7()).collect();
    let mut jitter = Jitter(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
    let mut unacked: BTreeMap<Uuid, Unacked> = BTreeMap::new();
    let mut node = index % nodes.len();
    let mut made = 0usize;
    let mut next_batch = Instant::now() + jitter.around(PERIOD, 0.5);
    loop {
        if !making.load(Ordering::Relaxed) && unacked.is_empty() {
            return;
        }
        let (host, port) = &nodes[node];
        // As the agent connects: client id `{site}.{gateway}`, a persistent session.
        let mut options = MqttOptions::new(format!("{SITE}.{name}"), host.clone(), *port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_credentials(format!("{SITE}/{name}"), GATEWAY_PASSWORD)
            .set_clean_session(false);
        let (client, mut events) = AsyncClient::new(options, 64);
        let mut subscribed = false;
        // The agent's rule (`ACK_SILENCE_PERIODS`): nothing on `/ack` for three resend
        // periods while batches wait, and the link is dropped and made again.
        let mut heard = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let failed = loop {
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if client.try_subscribe(topic(TopicKind::Ack), QoS::AtLeastOnce).is_err() {
                            break "subscribe not queued".to_string();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        if s.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                            break "subscription refused".to_string();
                        }
                        subscribed = true;
                        heard = Instant::now();
                        let mut l = ledger.lock().unwrap();
                        l.connects += 1;
                        l.events.push((Instant::now(), format!("subscribed on node {node}")));
                        drop(l);
                        // Everything unacknowledged goes again on a new link.
                        for u in unacked.values_mut() {
                            u.last_sent = Instant::now() - RESEND_AFTER;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        heard = Instant::now();
                        if let Ok(ack) = open_ack(&p.topic, &p.payload, &[hub_key]) {
                            let now = Instant::now();
                            let mut l = ledger.lock().unwrap();
                            for id in &ack.ids {
                                if let Some(u) = unacked.remove(id) {
                                    l.latencies.push((now, now - u.first_sent));
                                    l.acked.extend(u.ids);
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break e.to_string(),
                },
                _ = tick.tick() => {
                    if !subscribed {
                        continue;
                    }
                    let now = Instant::now();
                    if !unacked.is_empty() && now.duration_since(heard) >= RESEND_AFTER * 3 {
                        break "no acknowledgement for three resend periods".to_string();
                    }
                    if making.load(Ordering::Relaxed) && now >= next_batch {
                        next_batch = now + jitter.around(PERIOD, 0.25);
                        let findings: Vec<_> = (0..BATCH)
                            .map(|k| {
                                let i = made + k;
                                let mut f = copy_rows::sample(i, tracks[i % TRACKS]);
                                f.site = SITE.to_string();
                                f.gateway.clone_from(&name);
                                f
                            })
                            .collect();
                        made += BATCH;
                        let batch = FindingBatch {
                            batch_id: Uuid::now_v7(),
                            sent_at: chrono::Utc::now(),
                            findings,
                        };
                        let ids: Vec<Uuid> = batch.findings.iter().map(|f| f.id).collect();
                        ledger.lock().unwrap().made.extend(ids.iter().copied());
                        let payload = sign_batch(&topic(TopicKind::Findings), &batch, &key).unwrap();
                        unacked.insert(ids[0], Unacked {
                            ids,
                            payload,
                            first_sent: now,
                            last_sent: now - RESEND_AFTER,
                        });
                    }
                    for u in unacked.values_mut() {
                        if now.duration_since(u.last_sent) >= RESEND_AFTER {
                            u.last_sent = now;
                            // A full request queue: try again on the next tick.
                            if client
                                .try_publish(topic(TopicKind::Findings), QoS::AtLeastOnce, false, u.payload.clone())
                                .is_err()
                            {
                                u.last_sent = now - RESEND_AFTER;
                                break;
                            }
                        }
                    }
                    if !making.load(Ordering::Relaxed) && unacked.is_empty() {
                        client.try_disconnect().ok();
                        return;
                    }
                }
            }
        };
        ledger
            .lock()
            .unwrap()
            .events
            .push((Instant::now(), format!("node {node} link failed: {failed}")));
        node = (node + 1) % nodes.len();
        tokio::time::sleep(jitter.around(Duration::from_millis(400), 0.5)).await;
    }
}

/// Every gateway's acknowledged and made findings, summed.
fn totals(ledgers: &[Arc<Mutex<Ledger>>]) -> (BTreeSet<Uuid>, BTreeSet<Uuid>) {
    let mut made = BTreeSet::new();
    let mut acked = BTreeSet::new();
    for l in ledgers {
        let l = l.lock().unwrap();
        made.extend(l.made.iter().copied());
        acked.extend(l.acked.iter().copied());
    }
    (made, acked)
}

/// Recovery from a fault at `since`: waits one [`PERIOD`] (every gateway, on whichever
/// node or replica the fault hit, has made a batch since), then until every finding
/// made so far is acknowledged; the time from the fault.
async fn recovered(
    what: &str,
    since: Instant,
    ledgers: &[Arc<Mutex<Ledger>>],
    context: impl Fn() -> String,
) -> Duration {
    tokio::time::sleep((since + PERIOD.mul_f64(1.25)).saturating_duration_since(Instant::now()))
        .await;
    let (outstanding, _) = totals(ledgers);
    let report = || {
        let (_, acked) = totals(ledgers);
        let missing: Vec<String> = ledgers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = l.lock().unwrap();
                let n = l
                    .made
                    .intersection(&outstanding)
                    .filter(|id| !acked.contains(id))
                    .count();
                let last_ack = l
                    .latencies
                    .last()
                    .map(|(at, _)| format!("{:.1} s ago", at.elapsed().as_secs_f64()));
                let events: Vec<String> = l
                    .events
                    .iter()
                    .map(|(at, e)| format!("{:.1} s ago: {e}", at.elapsed().as_secs_f64()))
                    .collect();
                (n > 0).then(|| {
                    format!("gw-{i}: {n} unacknowledged, last ack {last_ack:?}, links {events:?}")
                })
            })
            .collect();
        format!("made by then, not acknowledged: {missing:?}\n{}", context())
    };
    // A hang guard, not a target: the recovery time is the figure printed.
    let deadline = Instant::now() + RECOVERY_GUARD;
    loop {
        let (_, acked) = totals(ledgers);
        if outstanding.is_subset(&acked) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not recovered after {RECOVERY_GUARD:?}\n{}",
            report()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ack latencies (first publish → signed ack) of batches acknowledged between `from`
/// and `to`: how many, p50, p99 and the longest.
fn latencies(ledgers: &[Arc<Mutex<Ledger>>], from: Instant, to: Instant) -> String {
    let mut all: Vec<Duration> = ledgers
        .iter()
        .flat_map(|l| {
            l.lock()
                .unwrap()
                .latencies
                .iter()
                .filter(|(at, _)| *at >= from && *at <= to)
                .map(|(_, d)| *d)
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort();
    let at = |q: usize| {
        all.get((all.len() * q / 100).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!(
        "{} batches, ack p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        all.len(),
        at(50),
        at(99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_loses_and_duplicates_nothing_through_each_fault_in_turn() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ha = tokio::task::block_in_place(|| PostgresHa::start(2));
    let url = ha.create_database("chitti").await;

    // The gateways, enrolled with their keys; the hub's key made before the hubs start
    // (they load it from the shared data directory).
    let store = AnyStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let password_hash = chitti_hub::credentials::hash_password(GATEWAY_PASSWORD).unwrap();
    for i in 0..GATEWAYS {
        let mut seed = [0xFA; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        store
            .add_gateway(&NewGateway {
                site: SITE.into(),
                gateway: format!("gw-{i}"),
                password_hash: password_hash.clone(),
                public_key: signing_key_from_seed(&seed).verifying_key().to_bytes(),
            })
            .await
            .unwrap();
    }
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let hub_key = chitti_hub::hub_key::load_or_create(
        &dir.path()
            .join("data")
            .join(chitti_hub::hub_key::DEFAULT_FILE),
    )
    .unwrap()
    .verifying_key();

    let logins: Vec<NatsGatewayLogin> = (0..GATEWAYS)
        .map(|i| NatsGatewayLogin::new(SITE, &format!("gw-{i}"), GATEWAY_PASSWORD))
        .collect();
    let cluster =
        NatsCluster::start_with(dir.path(), 3, Some(("chitti-hub", HUB_PASSWORD)), |node| {
            shipped_nats_node_config(node, &logins, HUB_PASSWORD)
        });
    let login = Some(("chitti-hub", HUB_PASSWORD));
    let (node_ports, nats_urls, mqtt_urls) = (
        cluster.ports().to_vec(),
        cluster.nats_urls(),
        cluster.mqtt_urls(),
    );
    let cluster = Mutex::new(cluster);

    // Replica B reaches everything through proxies: its partition.
    let mut b_proxies = Vec::new();
    let mut b_servers = Vec::new();
    let mut b_mqtt = Vec::new();
    for p in &node_ports {
        let n = CuttableProxy::start(p.client).await;
        b_servers.push(format!("nats://127.0.0.1:{}", n.port));
        let m = CuttableProxy::start(p.mqtt).await;
        b_mqtt.push(format!("mqtt://127.0.0.1:{}", m.port));
        b_proxies.extend([n, m]);
    }
    let db_proxy = CuttableProxy::start(ha.port).await;
    let b_url = url.replace(&format!(":{}/", ha.port), &format!(":{}/", db_proxy.port));
    b_proxies.push(db_proxy);

    // Every alert notified to a webhook and PagerDuty.
    let secret = hub_command(&["notify", "new-secret"]).trim().to_string();
    let receiver = HttpReceiver::start("webhook", Arc::new(|_, _| true)).await;
    let notifications = webhook_and_pagerduty(
        &receiver.url("webhook"),
        &receiver.url("pagerduty"),
        &secret,
        200,
        5,
    );
    let with_notifications = |path: std::path::PathBuf| {
        let mut text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("ack_wait_s = 5\n", &format!("ack_wait_s = {ACK_WAIT_S}\n"));
        assert!(text.contains("ack_wait_s = 15"), "{text}");
        text.push_str(&notifications);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let config_a = with_notifications(nats_hub_config(
        dir.path(),
        &url,
        (nats_urls, mqtt_urls),
        "a",
        login,
    ));
    let config_b = with_notifications(nats_hub_config(
        dir.path(),
        &b_url,
        (b_servers, b_mqtt),
        "b",
        login,
    ));
    let password_file = dir.path().join("viewer-password");
    std::fs::write(&password_file, "fault runner watcher\n").unwrap();
    hub_command(&[
        "user",
        "add",
        "--config",
        &config_a,
        "--username",
        "vera",
        "--role",
        "viewer",
        "--password-file",
        &password_file.display().to_string(),
    ]);
    let start_a = || start_hub(&["--config", &config_a], &dir.path().join("hub-a.log"));
    let (hub_a, a) = start_a();
    let (hub_b, b) = start_hub(&["--config", &config_b], &dir.path().join("hub-b.log"));
    let hub_a = Mutex::new(Some(hub_a));
    let a = Mutex::new(a);
    let context = || {
        let a_log = hub_a
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| p.log_text())
            .unwrap_or_default();
        let tail = |t: String| {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "hub A:\n{}\nhub B:\n{}\n{}\n{}",
            tail(a_log),
            tail(hub_b.log_text()),
            cluster.lock().unwrap().log_tail(15),
            ha.log_tail(15)
        )
    };
    eventually("both replicas ready", context, || async {
        (ready(a.lock().unwrap().http) && ready(b.http)).then_some(())
    })
    .await;
    let token = api_login(b.http, "vera", "fault runner watcher");
    let stream_b = subscribe(b.http, &token, "", None);
    let setup = started.elapsed();

    // The fleet starts.
    let making = Arc::new(AtomicBool::new(true));
    let nodes: Vec<(String, u16)> = node_ports
        .iter()
        .map(|p| ("127.0.0.1".to_string(), p.mqtt))
        .collect();
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..GATEWAYS).map(|_| Arc::default()).collect();
    let fleet: Vec<_> = ledgers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            tokio::spawn(gateway(
                i,
                nodes.clone(),
                hub_key,
                making.clone(),
                l.clone(),
            ))
        })
        .collect();
    let load_started = Instant::now();
    recovered(
        "the fleet's first findings acknowledged",
        load_started,
        &ledgers,
        context,
    )
    .await;
    let steady_from = Instant::now();
    tokio::time::sleep(hold()).await;
    let baseline = latencies(&ledgers, steady_from, Instant::now());

    let mut report: Vec<String> = Vec::new();
    let mut fault = |what: &str, since: Instant, recovery: Duration| {
        report.push(format!(
            "{what}: recovered in {:.1} s; acked meanwhile: {}",
            recovery.as_secs_f64(),
            latencies(&ledgers, since, since + recovery)
        ));
    };

    // 1. Replica A dies; the survivor takes its unacknowledged messages; A restarts.
    let t = Instant::now();
    hub_a.lock().unwrap().take().unwrap().kill9();
    let r = recovered("after replica A's kill", t, &ledgers, context).await;
    fault("hub replica A killed (SIGKILL)", t, r);
    let (hub_a2, a2) = start_a();
    *hub_a.lock().unwrap() = Some(hub_a2);
    *a.lock().unwrap() = a2;
    eventually("replica A ready again", context, || async {
        ready(a.lock().unwrap().http).then_some(())
    })
    .await;
    tokio::time::sleep(hold()).await;

    // 2. A broker node dies; gateways on it fail over; it restarts.
    let t = Instant::now();
    cluster.lock().unwrap().kill(1);
    let r = recovered("after broker node 1's kill", t, &ledgers, context).await;
    fault("broker node killed (SIGKILL)", t, r);
    cluster.lock().unwrap().start_node(1);
    tokio::time::sleep(hold()).await;

    // 3. The Postgres primary's machine dies; the synchronous standby is promoted.
    let old = ha.primary().expect("a primary");
    let t = Instant::now();
    ha.kill(old);
    let r = recovered("after the Postgres primary's kill", t, &ledgers, context).await;
    fault("Postgres primary killed (Patroni failover)", t, r);
    // The dead node comes back as the synchronous standby before the next fault.
    ha.start_node(old);
    tokio::task::block_in_place(|| ha.wait_synchronous(Duration::from_secs(120)));
    tokio::time::sleep(hold()).await;

    // 4. Replica B is cut off from brokers and database, then healed.
    let t = Instant::now();
    for p in &b_proxies {
        p.cut();
    }
    eventually("replica B not ready while cut off", context, || async {
        (!ready(b.http)).then_some(())
    })
    .await;
    let r = recovered("during replica B's partition", t, &ledgers, context).await;
    tokio::time::sleep(PARTITION.saturating_sub(t.elapsed())).await;
    for p in &b_proxies {
        p.restore();
    }
    fault("hub replica B partitioned (brokers and database cut)", t, r);
    eventually("replica B ready after the partition", context, || async {
        ready(b.http).then_some(())
    })
    .await;
    let healed = Instant::now() - t;

    // B's stream lost the relay while cut off: it says so once B listens again.
    let a_http = a.lock().unwrap().http;
    eventually("both replicas' live relays listening", context, || async {
        (metric(a_http, "chitti_hub_live_relay_listening") == 1.0
            && metric(b.http, "chitti_hub_live_relay_listening") == 1.0)
            .then_some(())
    })
    .await;
    let mut b_events = 0;
    eventually(
        "replica B's stream saying resync after the partition",
        context,
        || {
            let mut resync = false;
            while let Ok(e) = stream_b.try_recv() {
                b_events += 1;
                resync |= e.event == "resync";
            }
            async move { resync.then_some(()) }
        },
    )
    .await;

    // After the faults, with both replicas hearing each other again, a new client on
    // each sees every alert that changes.
    let streams = [
        ("A", subscribe(a_http, &token, "", None)),
        ("B", subscribe(b.http, &token, "", None)),
    ];
    let watch_from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    making.store(false, Ordering::Relaxed);
    for g in fleet {
        tokio::time::timeout(Duration::from_secs(120), g)
            .await
            .expect("every gateway's findings acknowledged")
            .unwrap();
    }

    // Nothing lost, nothing twice.
    let (made, acked) = totals(&ledgers);
    assert_eq!(made, acked, "every finding made was acknowledged");
    let stored = all_stored_findings(&store).await;
    let stored_ids: BTreeSet<Uuid> = stored.iter().map(|f| f.finding.id).collect();
    assert_eq!(stored.len(), stored_ids.len(), "no finding twice");
    assert_eq!(
        stored_ids, made,
        "every acknowledged finding is stored, nothing else"
    );

    // Every alert that changed after the faults reached both new streams; a stream told
    // to resync (a late notice of a fault) must show every change after that.
    let page = store
        .list_alerts(&AlertQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.next_cursor.is_none(), "every alert on one page");
    let alerts = page.items;
    let mut resyncs = Vec::new();
    for (name, stream) in &streams {
        let mut seen = HashSet::new();
        let mut since = watch_from;
        let mut resynced = 0;
        let mut needed = 0;
        eventually(
            &format!("replica {name}'s stream shows every change"),
            context,
            || {
                while let Ok(e) = stream.try_recv() {
                    if e.event == "resync" {
                        resynced += 1;
                        since = chrono::Utc::now();
                        seen.clear();
                    } else if e.event == "alert" {
                        if let Some(id) = e.data["id"].as_str() {
                            seen.insert(id.to_string());
                        }
                    }
                }
                let changed: HashSet<String> = alerts
                    .iter()
                    .filter(|al| al.updated_at > since)
                    .map(|al| al.id.to_string())
                    .collect();
                needed = changed.len();
                let done = changed.is_subset(&seen);
                async move { done.then_some(()) }
            },
        )
        .await;
        assert!(
            needed > 0,
            "replica {name}: changes to see after the last resync"
        );
        resyncs.push(format!(
            "{name}: {needed} alerts seen changing, {resynced} resyncs"
        ));
    }

    // Every alert notified: one PagerDuty incident each, every message delivered.
    let (log, webhook_deliveries) = assert_notified_once(&store, &receiver, &alerts, context).await;
    let sent = log.iter().filter(|n| n.channel == "scada").count();

    let connects: usize = ledgers.iter().map(|l| l.lock().unwrap().connects).sum();
    eprintln!(
        "fault runner: {GATEWAYS} gateways, {} findings made, acknowledged and stored once, \
         {} alerts, {} notifications ({} webhook deliveries for {} messages), {connects} \
         gateway connections; setup {:.0} s, load {:.0} s, before the faults {}; B healed {:.1} s after its cut, its stream resynced after {b_events} events; streams after the faults: {}",
        made.len(),
        alerts.len(),
        log.len(),
        webhook_deliveries,
        sent,
        setup.as_secs_f64(),
        load_started.elapsed().as_secs_f64(),
        baseline,
        healed.as_secs_f64(),
        resyncs.join("; "),
    );
    for line in &report {
        eprintln!("  {line}");
    }
    store.close().await;
    assert!(hub_b.terminate().success());
    let a_process = hub_a.lock().unwrap().take().unwrap();
    assert!(a_process.terminate().success());
}
