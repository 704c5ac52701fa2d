//! Live events across replicas on a real Postgres: two relays, each with its own pool
//! (as two hub processes have), one scratch database. What one replica names reaches
//! the other's change queue, never comes back to itself; payloads that are not notices
//! are ignored; and a listening connection killed by the server (a failover) turns into
//! a resync and then carries on.

use chitti_hub::live::{Change, LiveEvents};
use chitti_hub::live_relay;
use chitti_test_support::ScratchPostgres;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

struct Replica {
    live: Arc<LiveEvents>,
    changes: mpsc::Receiver<Change>,
    _relay: tokio::task::JoinHandle<()>,
}

async fn replica(url: &str) -> Replica {
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect(url)
        .await
        .unwrap();
    let live = Arc::new(LiveEvents::new(64));
    let changes = live.take_changes().unwrap();
    let relay = live_relay::spawn(Arc::clone(&live), pool, std::future::pending())
        .expect("the first relay");
    Replica {
        live,
        changes,
        _relay: relay,
    }
}

/// Backends of this database listening on the relay's channel.
async fn listeners(admin: &PgPool, database: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(database)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Polls until `n` relays listen (each connects on its own task).
async fn until_listening(admin: &PgPool, database: &str, n: usize) -> Vec<i32> {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tick.tick().await;
            let pids = listeners(admin, database).await;
            if pids.len() == n {
                return pids;
            }
        }
    })
    .await
    .expect("relays listening within 30 s")
}

async fn next(changes: &mut mpsc::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(30), changes.recv())
        .await
        .expect("a change within 30 s")
        .expect("queue open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_the_other_once_and_survives_a_dropped_listener() {
    let db = ScratchPostgres::create("chitti_relay").await;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    let mut a = replica(&db.url).await;
    let mut b = replica(&db.url).await;
    until_listening(&admin, &db.name, 2).await;

    // Whoever can NOTIFY on the database can send anything: what is not a notice is
    // ignored, and the relay carries on (the next real change still arrives).
    for garbage in [
        "not json",
        "{\"origin\": 1}",
        "{\"origin\": \"x\", \"change\": {\"kind\": \"drop_tables\"}}",
    ] {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(live_relay::CHANNEL)
            .bind(garbage)
            .execute(&admin)
            .await
            .unwrap();
    }
    let alert = Uuid::now_v7();
    a.live.alerts_changed(vec![alert]);
    assert_eq!(next(&mut a.changes).await, Change::Alerts(vec![alert]));
    assert_eq!(next(&mut b.changes).await, Change::Alerts(vec![alert]));

    // B's change reaches A; A's own notice (delivered to A before B's, in commit
    // order) was not applied a second time.
    b.live.gateway_changed("north", "gw-1");
    let from_b = Change::Gateway {
        site: "north".into(),
        gateway: "gw-1".into(),
    };
    assert_eq!(next(&mut b.changes).await, from_b);
    assert_eq!(next(&mut a.changes).await, from_b);

    // A failover kills B's listening connection: B's clients are told to resync,
    // and B hears A again once sqlx has reconnected.
    let pids = listeners(&admin, &db.name).await;
    for pid in &pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&admin)
            .await
            .unwrap();
    }
    assert!(matches!(next(&mut b.changes).await, Change::Resync(_)));
    assert!(matches!(next(&mut a.changes).await, Change::Resync(_)));
    until_listening(&admin, &db.name, 2).await;
    let later = Uuid::now_v7();
    a.live.alerts_changed(vec![later]);
    assert_eq!(next(&mut a.changes).await, Change::Alerts(vec![later]));
    assert_eq!(next(&mut b.changes).await, Change::Alerts(vec![later]));
    assert!(b.changes.try_recv().is_err(), "nothing else arrived at B");
    admin.close().await;
}
