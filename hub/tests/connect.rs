//! Connecting: URLs, SQLite's durability settings, and clean errors when the database
//! cannot be reached.

mod support;

use chitti_hub::store::*;
use std::time::Duration;

fn quick() -> StoreOptions {
    StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
        sqlite_busy_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clean_error_not_a_hang() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres:s3cret-pw@127.0.0.1:{port}/chitti");
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        AnyStore::connect_with(&url, &quick()),
    )
    .await
    .expect("connect gives up within its timeout");
    let err = result.expect_err("nothing listens there");
    assert!(err.is_unavailable(), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("database unavailable"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn an_unopenable_sqlite_file_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}/missing/dir/hub.db?mode=rwc",
        dir.path().display()
    );
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        AnyStore::connect_with(&url, &quick()),
    )
    .await
    .expect("no hang");
    assert!(result.is_err());
}

#[tokio::test]
async fn unknown_urls_are_refused_without_echoing_them() {
    let err = AnyStore::connect("mysql://root:hunter2@db/chitti")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl));
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn sqlite_is_durable_wal_with_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display()),
        format!("sqlite:{}", dir.path().join("a.db").display()),
    ] {
        let store = match AnyStore::connect_with(&url, &quick()).await.unwrap() {
            AnyStore::Sqlite(s) => s,
            other => panic!("{url} opened {:?}", other.backend()),
        };
        let pool = store.pool();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap();
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(pool)
            .await
            .unwrap();
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(
            (journal.as_str(), synchronous, fk, busy),
            ("wal", 2, 1, 1000),
            "{url}"
        );
        store.close().await;
    }
    let opened = SqliteStore::open(&dir.path().join("b.db"), &quick())
        .await
        .unwrap();
    opened.migrate().await.unwrap();
    assert_eq!(opened.backend(), Backend::Sqlite);
}

#[tokio::test]
async fn sqlite_foreign_keys_are_enforced() {
    let db = support::TestDb::migrated("sqlite").await;
    let AnyStore::Sqlite(store) = &db.store else {
        unreachable!()
    };
    let orphan = sqlx::query(
        "INSERT INTO cameras (site, gateway, camera, state, fps, updated_at) VALUES ('a', 'b', 'c', 'idle', 0, 0)",
    )
    .execute(store.pool())
    .await;
    assert!(orphan.is_err(), "a camera of an unknown gateway is refused");
}

#[tokio::test]
async fn postgres_urls_connect_and_ping() {
    let db = support::TestDb::migrated("postgres").await;
    assert_eq!(db.store.backend(), Backend::Postgres);
    db.store.ping().await.unwrap();
}
