//! The agent and the hub as real processes, over real brokers and databases: the hub's
//! database ends up with exactly the findings the simulated cameras produced, each
//! once, through a hub crash and a database outage.

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;

/// Every finding in the store.
async fn all_findings(store: &AnyStore) -> Vec<chitti_common::finding::Finding> {
    all_stored_findings(store)
        .await
        .into_iter()
        .map(|f| f.finding)
        .collect()
}

/// Every finding in the store, as sorted shapes.
async fn stored_shapes(store: &AnyStore) -> Vec<(String, String, String, u8, String)> {
    let mut shapes: Vec<_> = all_findings(store).await.iter().map(shape).collect();
    shapes.sort();
    shapes
}

async fn wait_for_exact(
    store: &AnyStore,
    expected: &[(String, String, String, u8, String)],
    hub: &Process,
    agent: &Process,
) {
    eventually(
        "every predicted finding in the hub's database",
        || {
            format!(
                "hub log:\n{}\nagent log:\n{}",
                hub.log_text(),
                agent.log_text()
            )
        },
        || async {
            let n = store.count_findings().await.ok()?;
            (n as usize >= expected.len()).then_some(())
        },
    )
    .await;
    assert_eq!(
        stored_shapes(store).await,
        expected,
        "exactly the predicted findings, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_to_embedded_broker_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    enrol(
        &["--data", &data_s],
        "north-yard",
        "gw-1",
        &dir.path().join("gw1"),
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
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{}", addrs.mqtt.unwrap()),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        60,
    );
    let expected = predicted_shapes(&text);
    assert!(expected.len() >= 10);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    wait_for_exact(&store, &expected, &hub, &agent).await;
    // One alert per track episode, with the worst level seen.
    let alerts = store.list_alerts(&Default::default()).await.unwrap();
    assert_eq!(alerts.items.len(), 1);
    assert_eq!(
        alerts.items[0].worst_level,
        expected.iter().map(|s| s.3).max().unwrap()
    );
    // The agent's outbox drains: every finding was acknowledged after commit.
    eventually(
        "the gateway's empty outbox in its status",
        || hub.log_text(),
        || async {
            let g = store.gateway("north-yard", "gw-1").await.ok()??;
            (g.buffer?.depth == 0).then_some(())
        },
    )
    .await;
    assert!(agent.terminate().success());
    eventually(
        "the gateway offline",
        || hub.log_text(),
        || async {
            let g = store.gateway("north-yard", "gw-1").await.ok()??;
            (!g.online).then_some(())
        },
    )
    .await;
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_to_mosquitto_to_hub_in_external_mode_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = ScratchPostgres::create("chitti_e2e").await;
    let group = format!("e2e-{}", uuid::Uuid::now_v7().simple());
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{}\"\n[store]\nurl = \"{}\"\n[broker]\nmode = \"external\"\n[broker.external]\nurl = \"mqtt://127.0.0.1:1883\"\ngroup = \"{group}\"\nclient_id = \"{group}-hub\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("data").display(),
            db.url
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    let site = format!("ext-{}", std::process::id());
    enrol(
        &["--config", &config_s],
        &site,
        "gw-1",
        &dir.path().join("gw1"),
    );
    let (hub, _addrs) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let text = simulated_agent_config(
        &site,
        "gw-1",
        "mqtt://127.0.0.1:1883",
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        60,
    );
    let expected = predicted_shapes(&text);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&db.url).await.unwrap();
    wait_for_exact(&store, &expected, &hub, &agent).await;
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    enrol(
        &["--data", &data_s],
        "north-yard",
        "gw-1",
        &dir.path().join("gw1"),
    );
    let mqtt = format!("127.0.0.1:{}", free_port());
    let hub_args = [
        "--data",
        data_s.as_str(),
        "--mqtt",
        mqtt.as_str(),
        "--http",
        "127.0.0.1:0",
    ];
    let (hub, _) = start_hub(&hub_args, &dir.path().join("hub.log"));
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{mqtt}"),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        240,
    );
    let expected = predicted_shapes(&text);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    eventually(
        "the first findings",
        || hub.log_text(),
        || async { (store.count_findings().await.ok()? >= 3).then_some(()) },
    )
    .await;
    hub.kill9();
    let before = store.count_findings().await.unwrap();
    // The agent goes on; its outbox holds what the dead hub did not acknowledge.
    let (hub, _) = start_hub(&hub_args, &dir.path().join("hub2.log"));
    wait_for_exact(&store, &expected, &hub, &agent).await;
    assert!(before < expected.len() as u64 || before == expected.len() as u64);
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_unreachable_nothing_is_acknowledged_and_everything_lands_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = ScratchPostgres::create("chitti_e2e").await;
    let proxy = CuttableProxy::start(5432).await;
    let config = postgres_hub_config(dir.path(), &db.url_via(proxy.port));
    let config_s = config.display().to_string();
    enrol(
        &["--config", &config_s],
        "north-yard",
        "gw-1",
        &dir.path().join("gw1"),
    );
    let (hub, addrs) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    // Paced frames: the stream is still running when the database goes away.
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{}", addrs.mqtt.unwrap()),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        60,
    );
    let text = paced(text, 200);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&db.url).await.unwrap();
    eventually(
        "the first findings",
        || hub.log_text(),
        || async { (store.count_findings().await.ok()? >= 2).then_some(()) },
    )
    .await;
    proxy.cut();
    // The hub notices, retries, acknowledges nothing: the agent keeps resending.
    eventually(
        "the hub failing to commit",
        || hub.log_text(),
        || async { hub.log_text().contains("not acknowledging").then_some(()) },
    )
    .await;
    let during = store.count_findings().await.unwrap();
    proxy.restore();
    // Everything the agent logged lands, once (the paced camera may drop frames, so
    // the agent's own log is the reference).
    eventually(
        "the camera finished and every finding it made in the database",
        || agent.log_text(),
        || async {
            let cameras = store.list_cameras("north-yard", "gw-1").await.ok()?;
            let finished = cameras.iter().any(|c| c.state == "finished");
            let want = logged_finding_ids(&agent.log_text());
            let n = store.count_findings().await.ok()? as usize;
            (finished && n >= want.len()).then_some(())
        },
    )
    .await;
    let want = logged_finding_ids(&agent.log_text());
    let have: std::collections::BTreeSet<_> =
        all_findings(&store).await.iter().map(|f| f.id).collect();
    assert_eq!(have, want, "exactly the findings the agent made");
    assert!(during as usize <= want.len());
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_gateway_is_shut_out_while_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    for gw in ["gw-good", "gw-bad"] {
        enrol(&["--data", &data_s], "north-yard", gw, &dir.path().join(gw));
    }
    let listed = hub_command(&["gateway", "list", "--data", &data_s]);
    assert!(
        listed.contains("north-yard/gw-good\toffline")
            && listed.contains("north-yard/gw-bad\toffline"),
        "{listed}"
    );
    let revoked = hub_command(&[
        "gateway",
        "revoke",
        "--data",
        &data_s,
        "--site",
        "north-yard",
        "--gateway",
        "gw-bad",
    ]);
    assert!(revoked.contains("revoked"));
    assert!(
        hub_command(&["gateway", "list", "--data", &data_s]).contains("north-yard/gw-bad\trevoked")
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
    let mut agents = Vec::new();
    let mut expected = Vec::new();
    for gw in ["gw-good", "gw-bad"] {
        let text = simulated_agent_config(
            "north-yard",
            gw,
            &mqtt,
            &dir.path().join(gw),
            &dir.path().join(format!("outbox-{gw}")),
            40,
        );
        if gw == "gw-good" {
            expected = predicted_shapes(&text);
        }
        let config = dir.path().join(format!("{gw}.toml"));
        std::fs::write(&config, text).unwrap();
        agents.push(start_agent(&config, &dir.path().join(format!("{gw}.log"))));
    }
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    wait_for_exact(&store, &expected, &hub, &agents[0]).await;
    // The revoked gateway's login is refused: it logs why and keeps its findings.
    eventually(
        "the refused login in the revoked agent's log",
        || agents[1].log_text(),
        || async {
            agents[1]
                .log_text()
                .contains("mqtt link down")
                .then_some(())
        },
    )
    .await;
    assert!(
        hub.log_text().contains("unknown or revoked gateway"),
        "{}",
        hub.log_text()
    );
    assert!(stored_shapes(&store).await.iter().all(|s| s.0 == "gw-good"));
    for a in agents {
        assert!(a.terminate().success());
    }
    assert!(hub.terminate().success());
}
