//! Postgres HA with zero acknowledged loss, on real engines: Patroni 3.0 (a primary
//! and a synchronous standby, etcd) behind HAProxy, both run from the shipped
//! `deploy/postgres/` files. A hub whose store URL names HAProxy takes a streaming
//! agent's findings while the primary's machine dies (Patroni and Postgres SIGKILLed):
//! the standby is promoted, the hub retries its commits and acknowledges nothing
//! meanwhile, `/readyz` says not ready and then ready again, and every finding the
//! agent made is stored exactly once with the agent's outbox empty (an acknowledged
//! finding is deleted at the gateway: one missing from the store would be lost for
//! good). The dead node then comes back and rejoins as the synchronous standby, where a
//! store pointed at it directly is refused as not the primary (`/readyz`'s check).

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_rides_through_a_postgres_failover_losing_no_acknowledged_finding() {
    let dir = tempfile::tempdir().unwrap();
    let ha = tokio::task::block_in_place(|| PostgresHa::start(2));
    let url = ha.create_database("chitti").await;
    let config = postgres_hub_config(dir.path(), &url);
    let config_s = config.display().to_string();
    let creds = dir.path().join("gw1");
    enrol(&["--config", &config_s], "north-yard", "gw-1", &creds);
    let (hub, addrs) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    // A paced camera: 40 frames/s for 20 s, so that the failover lands mid-stream.
    let text = paced(
        simulated_agent_config(
            "north-yard",
            "gw-1",
            &format!("mqtt://{}", addrs.mqtt.unwrap()),
            &creds,
            &dir.path().join("outbox"),
            60,
        ),
        800,
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&url).await.unwrap();
    let context = || {
        format!(
            "hub:\n{}\nagent:\n{}\n{}",
            hub.log_text(),
            agent.log_text(),
            ha.log_tail(25)
        )
    };
    eventually("the first findings stored", context, || async {
        (store.count_findings().await.ok()? >= 2).then_some(())
    })
    .await;
    assert_eq!(readyz(addrs.http), 200);

    let old = ha.primary().expect("a primary");
    ha.kill(old);
    let killed_at = Instant::now();
    eventually(
        "the hub not ready while no primary answers",
        context,
        || async { (readyz(addrs.http) == 503).then_some(()) },
    )
    .await;
    let unready_after = killed_at.elapsed();
    let new = eventually("the standby promoted", context, || async {
        ha.primary().filter(|p| *p != old)
    })
    .await;
    let promoted_after = killed_at.elapsed();
    eventually("the hub ready again", context, || async {
        (readyz(addrs.http) == 200).then_some(())
    })
    .await;
    let ready_after = killed_at.elapsed();

    eventually(
        "the camera finished, all it made stored, its outbox empty",
        context,
        || async { agent_drained(&store, "gw-1", &agent).await.then_some(()) },
    )
    .await;
    let stored = all_stored_findings(&store).await;
    let ids: BTreeSet<uuid::Uuid> = stored.iter().map(|f| f.finding.id).collect();
    assert_eq!(ids.len(), stored.len(), "no finding twice");
    assert_eq!(
        ids,
        logged_finding_ids(&agent.log_text()),
        "every finding the agent made is stored"
    );
    let retried = metric(addrs.http, "chitti_hub_store_errors_total");
    eprintln!(
        "primary {} killed: hub not ready after {unready_after:?}, {} promoted after \
         {promoted_after:?}, hub ready after {ready_after:?}; {} findings stored once, \
         {retried} store calls retried",
        ha.nodes[old].name,
        ha.nodes[new].name,
        stored.len()
    );

    // The dead node comes back (pg_rewind) as the synchronous standby.
    ha.start_node(old);
    tokio::task::block_in_place(|| ha.wait_synchronous(Duration::from_secs(120)));
    let (_, cluster) = http_get(ha.nodes[new].rest_port, "/cluster").unwrap();
    assert!(
        cluster.contains(&format!(
            "\"name\": \"{}\", \"role\": \"sync_standby\"",
            ha.nodes[old].name
        )),
        "{cluster}"
    );
    // Pointed at the standby itself (a proxy that has not moved yet), the store says it
    // is no primary; through HAProxy it reaches the primary.
    let standby = AnyStore::connect(&ha.node_url(old, "chitti"))
        .await
        .unwrap();
    let refused = standby.ping().await;
    assert!(
        matches!(refused, Err(chitti_hub::store::StoreError::Standby)),
        "{refused:?}"
    );
    standby.close().await;
    store.ping().await.unwrap();
    store.close().await;
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}
