//! A store on a fresh database of either backend ([`TestDb`]), removed afterwards.

use chitti_hub::store::{AnyStore, StoreOptions};
use chitti_test_support::ScratchPostgres;
use std::time::Duration as StdDuration;

/// Options for test stores: small pools, short waits.
pub fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        acquire_timeout: StdDuration::from_secs(10),
        sqlite_busy_timeout: StdDuration::from_secs(10),
    }
}

/// A store on a fresh database, dropped (Postgres) or deleted (SQLite) afterwards, also
/// when the test panics.
pub struct TestDb {
    pub store: AnyStore,
    _scratch: Scratch,
}

/// What holds the database; dropping it removes the database.
enum Scratch {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] ScratchPostgres),
}

impl TestDb {
    /// A SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display());
        let store = AnyStore::connect_with(&url, &options())
            .await
            .expect("open sqlite");
        Self {
            store,
            _scratch: Scratch::Sqlite(dir),
        }
    }

    /// A database `chitti_test_<random>` on the test server.
    pub async fn postgres() -> Self {
        let scratch = ScratchPostgres::create("chitti_test").await;
        let store = AnyStore::connect_with(&scratch.url, &options())
            .await
            .expect("open postgres");
        Self {
            store,
            _scratch: Scratch::Postgres(scratch),
        }
    }

    /// An unmigrated database of the named backend.
    pub async fn fresh(backend: &str) -> Self {
        match backend {
            "sqlite" => Self::sqlite().await,
            "postgres" => Self::postgres().await,
            other => panic!("unknown backend {other}"),
        }
    }

    /// The same, already migrated.
    pub async fn migrated(backend: &str) -> Self {
        let db = Self::fresh(backend).await;
        use chitti_hub::store::prelude::*;
        db.store.migrate().await.expect("migrate");
        db
    }
}
