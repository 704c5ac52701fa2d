//! Test databases and sample findings for the store conformance suite.

#![allow(dead_code)]

use chitti_common::finding::*;
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::severity::{AssessedInputs, SeverityAssessment};
use chitti_hub::store::{AnyStore, IngestedFinding, StoreOptions};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::Connection;
use std::time::Duration as StdDuration;
use uuid::Uuid;

/// Admin URL for creating and dropping per-test databases.
pub fn postgres_admin_url() -> String {
    std::env::var("CHITTI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

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
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
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
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A database `chitti_test_<random>` on the test server.
    pub async fn postgres() -> Self {
        let admin_url = postgres_admin_url();
        let name = format!("chitti_test_{}", Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test postgres (set CHITTI_TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        // From here on the guard drops the database whatever happens.
        let cleanup = Cleanup::Postgres {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = database_url(&admin_url, &name);
        let store = AnyStore::connect_with(&url, &options())
            .await
            .expect("open postgres");
        Self { store, cleanup }
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

/// The admin URL with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(base);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, db) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime, which cannot block on itself: use a
            // thread with a runtime of its own. WITH (FORCE) ends the pool's sessions.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {name}");
            }
        }
    }
}

/// A fixed instant plus `ms` milliseconds.
pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 21, 40, 0).unwrap() + Duration::milliseconds(ms)
}

/// A finding template: change what a test needs.
pub fn finding(track: Uuid, level: u8, max_c: f64, observed_ms: i64) -> Finding {
    let observed_at = at(observed_ms);
    let captured = observed_at
        .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
        - Duration::milliseconds(180);
    Finding {
        id: Uuid::now_v7(),
        site: "north-yard".into(),
        gateway: "gw-07".into(),
        camera: "cam-1".into(),
        asset: Some("bay3-breaker-b".into()),
        preset: Some("p4".into()),
        captured_at: captured,
        observed_at,
        source: FindingSource::Stream,
        component: Some(DetectedComponent {
            class: "bushing".into(),
            confidence: 0.91,
            bbox: PixelRect {
                x: 300,
                y: 120,
                w: 40,
                h: 90,
            },
        }),
        hotspot: HotspotSummary {
            bbox: PixelRect {
                x: 310,
                y: 130,
                w: 12,
                h: 18,
            },
            max_c,
            mean_c: max_c - 7.2,
            max_at: PixelPoint { x: 316, y: 139 },
            area_px: 171,
        },
        reference: ReferenceSummary {
            ambient_c: 21.0,
            ambient_source: "camera atmospheric temperature".into(),
            similar: None,
        },
        severity: SeverityAssessment {
            table: "utility-absolute".into(),
            table_version: 1,
            level,
            level_name: format!("level {level}"),
            action: "inspect".into(),
            inputs: AssessedInputs {
                max_c,
                reference_c: None,
                reference_kind: None,
                reference_source: None,
                delta_c: None,
                compared_c: max_c,
            },
            cool_exception: false,
            not_assessed: None,
            qualitative: false,
        },
        measurement: Measurement {
            emissivity: 0.95,
            distance_m: 12.0,
            reflected_c: 20.0,
            atmosphere_c: 21.0,
            relative_humidity: 0.6,
            qualitative: false,
        },
        track: TrackSummary {
            id: track,
            first_seen: at(0),
            last_seen: observed_at,
            frames: 30,
            state: TrackState::Raised,
        },
        model: None,
        evidence: Some(EvidenceRef {
            sha256: "ab".repeat(32),
        }),
        historical: false,
        quality: None,
    }
}

/// A cool exception: level 0 on `neta-similar`, the component `below_c` colder than
/// its loaded sibling phase (an open phase).
pub fn cool_finding(track: Uuid, max_c: f64, below_c: f64, observed_ms: i64) -> Finding {
    let mut f = finding(track, 0, max_c, observed_ms);
    let sibling_c = max_c + below_c;
    f.reference.similar = Some(SimilarComponent {
        label: "phase A".into(),
        celsius: sibling_c,
    });
    let s = &mut f.severity;
    s.table = "neta-similar".into();
    s.level_name = chitti_common::severity::NO_LEVEL_NAME.into();
    s.action = "investigate: far colder than its similar component".into();
    s.inputs.reference_c = Some(sibling_c);
    s.inputs.reference_kind = Some(chitti_common::severity::ReferenceKind::SimilarComponent);
    s.inputs.reference_source = Some("phase A".into());
    s.inputs.delta_c = Some(-below_c);
    s.inputs.compared_c = -below_c;
    s.cool_exception = true;
    f
}

/// Wraps findings as one received batch.
pub fn ingested(findings: &[Finding], received_at: DateTime<Utc>) -> Vec<IngestedFinding> {
    let batch_id = Uuid::now_v7();
    findings
        .iter()
        .map(|f| IngestedFinding {
            finding: f.clone(),
            received_at,
            batch_id,
        })
        .collect()
}
