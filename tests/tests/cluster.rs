//! The fleet shape of DESIGN §6 on real engines: a three-node NATS cluster (JetStream
//! and MQTT on every node, the shipped `deploy/brokers/nats/cluster.conf` with each
//! gateway's permissions) as the fleet broker, two `chitti-hub serve` replicas in NATS
//! mode on one Postgres, and real agents each given every node's address.
//!
//! While the agents stream, one hub replica and one broker node are killed with
//! SIGKILL. Nothing may be lost or stored twice: every finding every agent made is in
//! the store exactly once, the surviving replica ends ready, and its metrics say it
//! took over the dead one's work.

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The hub's password on the broker.
const HUB_PASSWORD: &str = "hub-secret";

/// An agent for `gateway` whose broker addresses are `urls` (the first is its own
/// node, the rest its failover order), streaming 200 frames at its own pace.
fn agent(dir: &std::path::Path, gateway: &str, urls: &[String]) -> Process {
    let text = simulated_agent_config(
        "north-yard",
        gateway,
        &urls[0],
        &dir.join(gateway),
        &dir.join(format!("{gateway}-outbox")),
        200,
    )
    .replace("fps = 1.0\nspeed = 20.0", "fps = 20.0\nspeed = 400.0")
    .replace("unpaced = true", "unpaced = false")
    .replace(
        "reconnect_min_ms = 50",
        &format!(
            "failover_urls = [{}]\nreconnect_min_ms = 50",
            urls[1..]
                .iter()
                .map(|u| format!("{u:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    assert!(text.contains("failover_urls"), "{text}");
    let config = dir.join(format!("{gateway}.toml"));
    std::fs::write(&config, &text).unwrap();
    start_agent(&config, &dir.join(format!("{gateway}.log")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_replicas_on_a_nats_cluster_lose_nothing_when_a_replica_and_a_broker_node_die() {
    let dir = tempfile::tempdir().unwrap();
    let db = ScratchPostgres::create("chitti_e2e").await;
    // Enrolled before the broker runs: its configuration lists their passwords.
    let enrolment = external_hub_config(dir.path(), &db.url, "mqtt://127.0.0.1:1", None);
    let gateways = ["gw-1", "gw-2", "gw-3"];
    for gw in gateways {
        enrol(
            &["--config", &enrolment.display().to_string()],
            "north-yard",
            gw,
            &dir.path().join(gw),
        );
    }
    let credentials: Vec<(&str, PathBuf)> = gateways
        .iter()
        .map(|gw| (*gw, dir.path().join(gw)))
        .collect();
    let mut cluster =
        NatsCluster::start_with(dir.path(), 3, Some(("chitti-hub", HUB_PASSWORD)), |node| {
            let logins: Vec<NatsGatewayLogin> = credentials
                .iter()
                .map(|(gw, creds)| NatsGatewayLogin::new("north-yard", gw, &mqtt_password(creds)))
                .collect();
            shipped_nats_node_config(node, &logins, HUB_PASSWORD)
        });
    let login = Some(("chitti-hub", HUB_PASSWORD));
    let nodes = || (cluster.nats_urls(), cluster.mqtt_urls());
    let config_a = nats_hub_config(dir.path(), &db.url, nodes(), "a", login);
    let config_b = nats_hub_config(dir.path(), &db.url, nodes(), "b", login);
    let (hub_a, a) = start_hub(
        &["--config", &config_a.display().to_string()],
        &dir.path().join("hub-a.log"),
    );
    let (hub_b, b) = start_hub(
        &["--config", &config_b.display().to_string()],
        &dir.path().join("hub-b.log"),
    );
    let hubs_log = || {
        format!(
            "hub A:\n{}\nhub B:\n{}\n{}",
            hub_a.log_text(),
            hub_b.log_text(),
            cluster.log_tail(20)
        )
    };
    eventually("both replicas ready", hubs_log, || async {
        (ready(a.http) && ready(b.http)).then_some(())
    })
    .await;

    // Each gateway starts on its own node and knows the others.
    let urls = cluster.mqtt_urls();
    let agents: Vec<Process> = gateways
        .iter()
        .enumerate()
        .map(|(i, gw)| {
            let order: Vec<String> = (0..3).map(|k| urls[(i + k) % 3].clone()).collect();
            agent(dir.path(), gw, &order)
        })
        .collect();
    let store = AnyStore::connect(&db.url).await.unwrap();
    eventually("every gateway's camera known", hubs_log, || async {
        let mut all = true;
        for gw in gateways {
            all &= !store.list_cameras("north-yard", gw).await.ok()?.is_empty();
        }
        all.then_some(())
    })
    .await;

    // Mid-stream: replica A and node 0 (gw-1's node) die at once.
    hub_a.kill9();
    cluster.kill(0);
    let killed_at = std::time::Instant::now();
    let made = || {
        agents
            .iter()
            .flat_map(|p| logged_finding_ids(&p.log_text()))
            .collect::<BTreeSet<uuid::Uuid>>()
    };
    let log = || {
        format!(
            "stored ?; made {}\nhub B:\n{}\n{}\n{}",
            made().len(),
            hub_b.log_text(),
            agents
                .iter()
                .map(|p| p.log_text())
                .collect::<Vec<_>>()
                .join("\n---\n"),
            cluster.log_tail(30)
        )
    };
    eventually(
        "every camera finished and all they made stored",
        log,
        || async {
            for gw in gateways {
                let cameras = store.list_cameras("north-yard", gw).await.ok()?;
                if !cameras.iter().any(|c| c.state == "finished") {
                    return None;
                }
            }
            (store.count_findings().await.ok()? as usize >= made().len()).then_some(())
        },
    )
    .await;

    let recovered = killed_at.elapsed();
    let stored = all_stored_findings(&store).await;
    let stored_ids: BTreeSet<uuid::Uuid> = stored.iter().map(|f| f.finding.id).collect();
    assert_eq!(stored.len(), stored_ids.len(), "no finding twice");
    assert_eq!(
        stored_ids,
        made(),
        "every finding the agents made is stored"
    );
    for gw in gateways {
        assert!(
            stored.iter().any(|f| f.finding.gateway == gw),
            "{gw} reached the store"
        );
    }
    // gw-1 lost its node: it went on through another one.
    let gw1 = agents[0].log_text();
    let connected_to =
        |p: &NatsNodePorts| format!("mqtt connected broker=(\"127.0.0.1\", {})", p.mqtt);
    assert!(
        cluster.ports()[1..]
            .iter()
            .any(|p| gw1.contains(&connected_to(p))),
        "gw-1 moved to another node:\n{gw1}"
    );
    assert!(ready(b.http), "B is ready on the surviving nodes");
    eprintln!(
        "all stored {recovered:?} after the kills; B: inserted {} of {}, redelivered {}, consumer binds {}",
        metric(b.http, "chitti_hub_findings_inserted_total"),
        stored.len(),
        metric(b.http, "chitti_hub_nats_redelivered_total"),
        metric(b.http, "chitti_hub_nats_consumer_binds_total"),
    );
    store.close().await;
    for p in agents {
        assert!(p.terminate().success());
    }
    assert!(hub_b.terminate().success());
}

/// A broker that refuses a gateway's `/ack` subscription (a NATS node does, with a
/// SUBACK failure, for a few seconds while its cluster elects after a loss; here the
/// gateway's permissions do, until they are fixed and reloaded) must not leave the
/// gateway sending for ever and deleting nothing: the agent says why, connects again,
/// and once the subscription is accepted every finding is acknowledged and its outbox
/// empties. The hub runs NATS mode on one node (`replicas = 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_ack_subscription_is_refused_connects_again_until_it_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let enrolment = external_hub_config(dir.path(), &sqlite_url(&data), "mqtt://127.0.0.1:1", None);
    let creds = dir.path().join("gw-1");
    enrol(
        &["--config", &enrolment.display().to_string()],
        "north-yard",
        "gw-1",
        &creds,
    );
    // Every user with explicit publish permissions: nats-server 2.9.10 crashes reloading
    // an authorization where an MQTT user has none (mqttCheckPubRetainedPerms, nil
    // pointer).
    let config = |ack: &str| {
        format!(
            "server_name: single\nlisten: 127.0.0.1:NATS_PORT\n\
             jetstream {{ store_dir: \"STORE_DIR\" }}\nmqtt {{ listen: 127.0.0.1:MQTT_PORT }}\n\
             authorization {{ users: [\n\
               {{ user: \"chitti-hub\", password: \"{HUB_PASSWORD}\",\n\
                  permissions: {{ publish: \">\", subscribe: \">\" }} }}\n\
               {{ user: \"north-yard/gw-1\", password: \"{gw}\", permissions: {{\n\
                  publish: \"chitti.v1.north-yard.gw-1.>\",\n\
                  subscribe: {{ {ack}: [\"chitti.v1.north-yard.gw-1.ack\"] }} }} }}\n\
             ] }}\n",
            gw = mqtt_password(&creds),
        )
    };
    let nats = NatsServer::start(dir.path(), &config("deny"));
    let node = (
        vec![format!("nats://127.0.0.1:{}", nats.port)],
        vec![format!("mqtt://127.0.0.1:{}", nats.mqtt_port)],
    );
    let hub_config = nats_hub_config(
        dir.path(),
        &sqlite_url(&data),
        node.clone(),
        "a",
        Some(("chitti-hub", HUB_PASSWORD)),
    );
    let (hub, addrs) = start_hub(
        &["--config", &hub_config.display().to_string()],
        &dir.path().join("hub.log"),
    );
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &node.1[0],
        &creds,
        &dir.path().join("outbox"),
        60,
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let context = || {
        format!(
            "hub:\n{}\nagent:\n{}\nnats:\n{}",
            hub.log_text(),
            agent.log_text(),
            nats.log_text()
        )
    };
    // Refused, it connects again (and is refused again) rather than carrying on
    // without acknowledgements.
    eventually(
        "the agent refused twice, connecting again",
        context,
        || async {
            let log = agent.log_text();
            (log.contains("broker refused a subscription")
                && log.matches("mqtt connected").count() >= 2)
                .then_some(())
        },
    )
    .await;
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();

    nats.reconfigure(&config("allow"));
    eventually(
        "every finding made stored and the outbox empty",
        context,
        || async { agent_drained(&store, "gw-1", &agent).await.then_some(()) },
    )
    .await;
    let stored: BTreeSet<uuid::Uuid> = all_stored_findings(&store)
        .await
        .iter()
        .map(|f| f.finding.id)
        .collect();
    assert_eq!(stored, logged_finding_ids(&agent.log_text()));
    assert!(ready(addrs.http));
    store.close().await;
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}
