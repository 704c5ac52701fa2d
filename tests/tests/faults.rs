//! Fault scenarios across agent, broker, hub and database, with real processes: a cut
//! link, a broker address lost (the agent fails over to the next), a killed agent, a
//! restarted broker, an outbox at its cap through a long outage, and a gateway whose
//! clock is hours off. Each ends by comparing the hub's
//! database with what the agent made.

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use std::collections::BTreeSet;
use std::path::Path;
use uuid::Uuid;

/// A hub on embedded defaults in `dir`, with one enrolled gateway `gw-1` of `site`.
fn embedded_hub(dir: &Path, site: &str) -> (Process, HubAddrs) {
    let data_s = dir.join("data").display().to_string();
    enrol(&["--data", &data_s], site, "gw-1", &dir.join("gw1"));
    start_hub(
        &[
            "--data",
            &data_s,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &dir.join("hub.log"),
    )
}

/// Waits until gw-1's camera has finished and the store holds as many findings as the
/// agent logged making; then asserts they are exactly those, none twice. The findings.
async fn all_made_stored_once(
    store: &AnyStore,
    agent: &Process,
    context: impl Fn() -> String,
) -> Vec<chitti_hub::store::StoredFinding> {
    eventually(
        "the camera finished and everything it made stored",
        context,
        || async {
            let cameras = store.list_cameras("north-yard", "gw-1").await.ok()?;
            let finished = cameras.iter().any(|c| c.state == "finished");
            let made = logged_finding_ids(&agent.log_text()).len();
            (finished && store.count_findings().await.ok()? as usize >= made).then_some(())
        },
    )
    .await;
    let stored = all_stored_findings(store).await;
    let ids: BTreeSet<Uuid> = stored.iter().map(|f| f.finding.id).collect();
    assert_eq!(ids.len(), stored.len(), "no finding twice");
    assert_eq!(
        ids,
        logged_finding_ids(&agent.log_text()),
        "exactly what the agent made"
    );
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_buffers_and_replays_as_historical_with_nothing_lost_or_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addrs) = embedded_hub(dir.path(), "north-yard");
    let proxy = CuttableProxy::start(addrs.mqtt.unwrap().port()).await;
    let text = paced(
        simulated_agent_config(
            "north-yard",
            "gw-1",
            &format!("mqtt://127.0.0.1:{}", proxy.port),
            &dir.path().join("gw1"),
            &dir.path().join("outbox"),
            60,
        ),
        400,
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&sqlite_url(&dir.path().join("data")))
        .await
        .unwrap();
    let context = || format!("hub:\n{}\nagent:\n{}", hub.log_text(), agent.log_text());
    eventually("the first findings", context, || async {
        (store.count_findings().await.ok()? >= 2).then_some(())
    })
    .await;
    proxy.cut();
    eventually("the agent seeing its link down", context, || async {
        agent.log_text().contains("mqtt link down").then_some(())
    })
    .await;
    // Findings made while the link is down stay in the outbox.
    let at_cut = logged_finding_ids(&agent.log_text()).len();
    eventually("findings made during the outage", context, || async {
        (logged_finding_ids(&agent.log_text()).len() >= at_cut + 3).then_some(())
    })
    .await;
    let during_outage = store.count_findings().await.unwrap();
    proxy.restore();
    let stored = all_made_stored_once(&store, &agent, context).await;
    let historical = stored.iter().filter(|f| f.finding.historical).count();
    assert!(
        historical >= 3,
        "findings made while the link was down are marked historical ({historical})"
    );
    assert!((during_outage as usize) < stored.len());
    // Historical findings arrived after live ones made later? Never mind the order of
    // arrival: each historical finding was made before the link came back, so it was
    // received after it was observed.
    for f in stored.iter().filter(|f| f.finding.historical) {
        assert!(f.received_at >= f.finding.observed_at);
    }
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

/// A clustered broker's node dies: the agent's `url` (one proxy) is cut for good, and
/// it carries on through `failover_urls` (a second proxy to the same broker, as a
/// second node of a cluster is), with nothing lost or twice. The first address is a
/// dead port, so failing over is also what the agent does at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_fails_over_to_the_next_broker_address_with_nothing_lost_or_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addrs) = embedded_hub(dir.path(), "north-yard");
    let broker = addrs.mqtt.unwrap().port();
    let (node_1, node_2) = (
        CuttableProxy::start(broker).await,
        CuttableProxy::start(broker).await,
    );
    let dead = free_port();
    let text = paced(
        simulated_agent_config(
            "north-yard",
            "gw-1",
            &format!("mqtt://127.0.0.1:{dead}"),
            &dir.path().join("gw1"),
            &dir.path().join("outbox"),
            60,
        ),
        400,
    )
    .replace(
        "[mqtt]\n",
        &format!(
            "[mqtt]\nfailover_urls = [\"mqtt://127.0.0.1:{}\", \"mqtt://127.0.0.1:{}\"]\n",
            node_1.port, node_2.port
        ),
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&sqlite_url(&dir.path().join("data")))
        .await
        .unwrap();
    let context = || format!("hub:\n{}\nagent:\n{}", hub.log_text(), agent.log_text());
    let connected_to = |port: u16| format!("mqtt connected broker=(\"127.0.0.1\", {port})");
    eventually("the agent on the first live address", context, || async {
        agent
            .log_text()
            .contains(&connected_to(node_1.port))
            .then_some(())
    })
    .await;
    eventually("the first findings", context, || async {
        (store.count_findings().await.ok()? >= 2).then_some(())
    })
    .await;
    node_1.cut();
    eventually("the agent on the next address", context, || async {
        agent
            .log_text()
            .contains(&connected_to(node_2.port))
            .then_some(())
    })
    .await;
    all_made_stored_once(&store, &agent, context).await;
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_stream_delivers_its_outbox_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addrs) = embedded_hub(dir.path(), "north-yard");
    // The hub is reachable only through a proxy held down while the agent dies, so the
    // outbox holds findings at the moment of the kill.
    let proxy = CuttableProxy::start(addrs.mqtt.unwrap().port()).await;
    let text = paced(
        simulated_agent_config(
            "north-yard",
            "gw-1",
            &format!("mqtt://127.0.0.1:{}", proxy.port),
            &dir.path().join("gw1"),
            &dir.path().join("outbox"),
            60,
        ),
        400,
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&sqlite_url(&dir.path().join("data")))
        .await
        .unwrap();
    let context = || hub.log_text();
    eventually("the first findings", context, || async {
        (store.count_findings().await.ok()? >= 2).then_some(())
    })
    .await;
    proxy.cut();
    let at_cut = logged_finding_ids(&agent.log_text()).len();
    eventually("findings made behind the cut", context, || async {
        (logged_finding_ids(&agent.log_text()).len() >= at_cut + 3).then_some(())
    })
    .await;
    agent.kill9();
    let made = logged_finding_ids(&std::fs::read_to_string(dir.path().join("agent.log")).unwrap());
    let acknowledged: BTreeSet<Uuid> = all_stored_findings(&store)
        .await
        .iter()
        .map(|f| f.finding.id)
        .collect();
    // What the dead agent's outbox holds: its promise.
    let outbox_config = chitti_agent::config::OutboxConfig {
        path: dir.path().join("outbox"),
        ..chitti_agent::config::OutboxConfig::default()
    };
    let pending: BTreeSet<Uuid> = {
        let outbox = chitti_agent::outbox::Outbox::open_configured(&outbox_config, false)
            .expect("the outbox opens after kill -9");
        outbox.stored_ids().into_iter().collect()
    };
    assert!(!pending.is_empty(), "the kill left findings in the outbox");
    assert!(pending.is_subset(&made));
    // A finding is made, then stored; only one still in the pipeline may be lost.
    let durable: BTreeSet<Uuid> = pending.union(&acknowledged).copied().collect();
    assert!(
        made.len() - durable.len() <= 2,
        "made {} durable {}",
        made.len(),
        durable.len()
    );

    // Restarted on a quiet scene (it makes nothing new), with the link back.
    let quiet = text.replace(
        "kind = \"simulated\"",
        "kind = \"simulated\"\nscene = \"quiet\"",
    );
    std::fs::write(dir.path().join("agent2.toml"), &quiet).unwrap();
    proxy.restore();
    let agent = start_agent(
        &dir.path().join("agent2.toml"),
        &dir.path().join("agent2.log"),
    );
    eventually(
        "the outbox delivered",
        || agent.log_text(),
        || async { (store.count_findings().await.ok()? as usize >= durable.len()).then_some(()) },
    )
    .await;
    eventually(
        "the gateway's outbox empty",
        || agent.log_text(),
        || async {
            let g = store.gateway("north-yard", "gw-1").await.ok()??;
            (g.buffer?.depth == 0).then_some(())
        },
    )
    .await;
    let stored: BTreeSet<Uuid> = all_stored_findings(&store)
        .await
        .iter()
        .map(|f| f.finding.id)
        .collect();
    assert_eq!(stored, durable, "everything durable, once; nothing else");
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

/// A Mosquitto of the test's own, on a free port (the machine's stays untouched).
struct OwnMosquitto {
    port: u16,
    child: std::process::Child,
}

impl OwnMosquitto {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mosquitto");
        Self { port, child }
    }

    async fn wait_ready(&self) {
        eventually("mosquitto accepting connections", String::new, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = OwnMosquitto::start(port);
    broker.wait_ready().await;
    let db = ScratchPostgres::create("chitti_e2e").await;
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{}\"\n[store]\nurl = \"{}\"\n[broker]\nmode = \"external\"\n[broker.external]\nurl = \"mqtt://127.0.0.1:{port}\"\ngroup = \"restart\"\nclient_id = \"restart-hub\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("data").display(),
            db.url
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    enrol(
        &["--config", &config_s],
        "north-yard",
        "gw-1",
        &dir.path().join("gw1"),
    );
    let (hub, _) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let text = paced(
        simulated_agent_config(
            "north-yard",
            "gw-1",
            &format!("mqtt://127.0.0.1:{port}"),
            &dir.path().join("gw1"),
            &dir.path().join("outbox"),
            60,
        ),
        400,
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&db.url).await.unwrap();
    let context = || format!("hub:\n{}\nagent:\n{}", hub.log_text(), agent.log_text());
    eventually("the first findings", context, || async {
        (store.count_findings().await.ok()? >= 2).then_some(())
    })
    .await;
    broker.stop();
    eventually("the agent seeing its link down", context, || async {
        agent.log_text().contains("mqtt link down").then_some(())
    })
    .await;
    let broker = OwnMosquitto::start(port);
    broker.wait_ready().await;
    eventually(
        "the camera finished and everything it made stored",
        context,
        || async {
            let cameras = store.list_cameras("north-yard", "gw-1").await.ok()?;
            let finished = cameras.iter().any(|c| c.state == "finished");
            let made = logged_finding_ids(&agent.log_text()).len();
            (finished && store.count_findings().await.ok()? as usize >= made).then_some(())
        },
    )
    .await;
    let stored = all_stored_findings(&store).await;
    let ids: BTreeSet<Uuid> = stored.iter().map(|f| f.finding.id).collect();
    assert_eq!(ids.len(), stored.len());
    assert_eq!(
        ids,
        logged_finding_ids(&agent.log_text()),
        "exactly what the agent made"
    );
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_at_its_cap_through_a_long_outage_shows_its_evictions_in_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addrs) = embedded_hub(dir.path(), "north-yard");
    let proxy = CuttableProxy::start(addrs.mqtt.unwrap().port()).await;
    // Down from the start: the whole stream goes into a 1 MiB outbox, each finding with
    // ~100 KiB of evidence.
    proxy.cut();
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://127.0.0.1:{}", proxy.port),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        60,
    )
    .replace("width = 160\nheight = 120", "width = 640\nheight = 480")
    .replace(
        "resend_after_s = 3",
        "resend_after_s = 3\nmax_bytes = \"1 MiB\"",
    )
    .replace("[mqtt]", "[mqtt]\nmax_packet_bytes = \"1 MiB\"");
    let expected = predicted_shapes(&text);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    eventually(
        "every frame analysed offline",
        || agent.log_text(),
        || async { (logged_finding_ids(&agent.log_text()).len() >= expected.len()).then_some(()) },
    )
    .await;
    let store = AnyStore::connect(&sqlite_url(&dir.path().join("data")))
        .await
        .unwrap();
    assert_eq!(store.count_findings().await.unwrap(), 0);
    proxy.restore();
    // The gateway reports its evictions; what survived arrives.
    let gateway = eventually(
        "the outbox drained and its evictions reported",
        || agent.log_text(),
        || async {
            let g = store.gateway("north-yard", "gw-1").await.ok()??;
            let b = g.buffer.as_ref()?;
            let stored = store.count_findings().await.ok()?;
            (b.depth == 0 && stored + b.evicted_findings == expected.len() as u64).then_some(g)
        },
    )
    .await;
    let buffer = gateway.buffer.unwrap();
    assert!(
        buffer.evicted_evidence > 0,
        "evidence went first: {buffer:?}"
    );
    // Every critical finding survived the cap.
    let stored: Vec<_> = all_stored_findings(&store)
        .await
        .into_iter()
        .map(|f| shape(&f.finding))
        .collect();
    let critical: Vec<_> = expected.iter().filter(|s| s.3 == 3).collect();
    assert!(!critical.is_empty());
    for c in critical {
        assert!(stored.contains(c), "critical finding {c:?} lost");
    }
    // The API shows the same figures to operators.
    let password = dir.path().join("pw");
    std::fs::write(&password, "outage watcher pw\n").unwrap();
    let data_s = dir.path().join("data").display().to_string();
    hub_command(&[
        "user",
        "add",
        "--data",
        &data_s,
        "--username",
        "vera",
        "--role",
        "viewer",
        "--password-file",
        &password.display().to_string(),
    ]);
    let token = api_login(addrs.http, "vera", "outage watcher pw");
    let gateways = api_get(addrs.http, &token, "/api/v1/gateways");
    let g = &gateways["items"][0];
    assert_eq!(
        g["evicted_evidence"].as_u64(),
        Some(buffer.evicted_evidence)
    );
    assert_eq!(
        g["evicted_findings"].as_u64(),
        Some(buffer.evicted_findings)
    );
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

/// libfaketime (Debian package `faketime`, installed by tests/run-all.sh), preloaded
/// into the agent only (not through the `faketime` wrapper, which would get the
/// signals meant for the agent).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_clock_hours_off_is_stored_with_both_clocks_and_ordered_by_hub_time() {
    let dir = tempfile::tempdir().unwrap();
    let data_s = dir.path().join("data").display().to_string();
    enrol(
        &["--data", &data_s],
        "north-yard",
        "gw-skewed",
        &dir.path().join("skewed"),
    );
    enrol(
        &["--data", &data_s],
        "north-yard",
        "gw-true",
        &dir.path().join("true"),
    );
    let (hub, addrs) = start_hub(
        &[
            "--data",
            &data_s,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &dir.path().join("hub.log"),
    );
    let mqtt = format!("mqtt://{}", addrs.mqtt.unwrap());
    let store = AnyStore::connect(&sqlite_url(&dir.path().join("data")))
        .await
        .unwrap();
    // First the gateway whose clock is five hours fast (libfaketime; monotonic time
    // untouched so its timers behave)…
    let skewed = simulated_agent_config(
        "north-yard",
        "gw-skewed",
        &mqtt,
        &dir.path().join("skewed"),
        &dir.path().join("outbox-skewed"),
        60,
    );
    std::fs::write(dir.path().join("skewed.toml"), &skewed).unwrap();
    let child = std::process::Command::new(binary("chitti-agent"))
        .args(["run", "--config"])
        .arg(dir.path().join("skewed.toml"))
        .env("LD_PRELOAD", FAKETIME_LIB)
        .env("FAKETIME", "+5h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("CHITTI_LOG", "info,chitti_agent=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("skewed.log")).unwrap())
        .spawn()
        .expect("start the agent");
    let agent = Process {
        child,
        log: dir.path().join("skewed.log"),
    };
    let skewed_count = predicted_shapes(&skewed).len();
    assert!(skewed_count >= 5);
    eventually(
        "the skewed gateway's findings",
        || agent.log_text(),
        || async { (store.count_findings().await.ok()? as usize >= skewed_count).then_some(()) },
    )
    .await;
    assert!(agent.terminate().success());
    // …then one with a true clock.
    let honest = simulated_agent_config(
        "north-yard",
        "gw-true",
        &mqtt,
        &dir.path().join("true"),
        &dir.path().join("outbox-true"),
        60,
    );
    std::fs::write(dir.path().join("true.toml"), &honest).unwrap();
    let agent = start_agent(&dir.path().join("true.toml"), &dir.path().join("true.log"));
    let total = skewed_count + predicted_shapes(&honest).len();
    eventually(
        "both gateways' findings",
        || agent.log_text(),
        || async { (store.count_findings().await.ok()? as usize >= total).then_some(()) },
    )
    .await;
    assert!(agent.terminate().success());

    let stored = all_stored_findings(&store).await;
    assert_eq!(stored.len(), total);
    for f in &stored {
        // Both clocks are kept: the gateway's (observed_at) and the hub's (received_at).
        let ahead = f.finding.observed_at - f.received_at;
        if f.finding.gateway == "gw-skewed" {
            assert!(
                ahead > chrono::Duration::hours(4) && ahead < chrono::Duration::hours(6),
                "gateway clock 5 h ahead: {ahead}"
            );
        } else {
            assert!(ahead.num_minutes().abs() < 5, "true clock: {ahead}");
        }
    }
    // Listed by hub time: the true gateway's (received later) come first, although the
    // skewed gateway says its findings are hours newer.
    let first_skewed = stored
        .iter()
        .position(|f| f.finding.gateway == "gw-skewed")
        .unwrap();
    assert!(stored[..first_skewed]
        .iter()
        .all(|f| f.finding.gateway == "gw-true"));
    assert_eq!(first_skewed, total - skewed_count);
    assert!(stored
        .windows(2)
        .all(|w| w[0].received_at >= w[1].received_at));
    assert!(hub.terminate().success());
}
