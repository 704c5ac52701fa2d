//! The hub's relational store (DESIGN.md §5): findings, alerts, gateways, telemetry,
//! dead letters, and the tables the HTTP API builds on.
//!
//! One trait, [`Store`], two implementations: [`SqliteStore`] (the embedded default, a
//! file next to the binary) and [`PgStore`] (the fleet store), and [`AnyStore`] which
//! picks one from a URL. One conformance suite (`tests/conformance.rs`) runs against
//! both.
//!
//! # Invariants
//!
//! - **Exactly-once findings.** A finding's UUIDv7 is its primary key and every insert
//!   is `ON CONFLICT (id) DO NOTHING`. [`Store::insert_findings`] commits a batch in one
//!   transaction; when it returns `Ok`, every id in the [`InsertReport`] (inserted and
//!   duplicate alike) is durable and may be acknowledged. SQLite runs in WAL mode with
//!   `synchronous=FULL`, so a commit is on disk; Postgres commits with its default
//!   `synchronous_commit=on`.
//! - **Alerts move with the findings, in the same transaction**, and only newly inserted
//!   findings change them, so a resent batch never counts twice.
//! - **Lock order.** Rows are written sorted by key (findings by id, alerts by track), so
//!   concurrent hub replicas cannot deadlock each other on Postgres.
//! - **Time.** Every timestamp is stored to the microsecond (Postgres' precision;
//!   SQLite stores integer microseconds so that values sort). The hub's clock is
//!   `received_at`; the agent's clocks (`captured_at` with its UTC offset,
//!   `observed_at`) are stored beside it and in the finding's JSON, which is kept whole.
//! - **No secrets in errors.** [`StoreError`] never carries a URL, password or hash, and
//!   the `Debug` of gateway records redacts the password hash.
//!
//! # Choices
//!
//! - Gateway MQTT usernames are `{site}/{gateway}` ([`gateway_username`]).
//! - The Postgres `findings` table is not partitioned (see the migration's header: a
//!   `received_at` partition key would break `ON CONFLICT (id)`; partition by `id`
//!   ranges when it is needed).
//! - Findings have no foreign keys: ingest must never refuse a finding (and so withhold
//!   its ack) because its site, asset or evidence is not known yet.

mod any;
mod cursor;
mod error;
mod model;
mod postgres;
mod rows;
mod sqlite;

pub use any::AnyStore;
pub use cursor::Cursor;
pub use error::StoreError;
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use chitti_common::protocol::{AgentStatus, Telemetry};
use chrono::{DateTime, Utc};
use std::future::Future;
use uuid::Uuid;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a local file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// Lowercase name, for logs and `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The hub's store. Every method is one short transaction (or one query); futures are
/// `Send`, so callers can hold a `S: Store` across `tokio::spawn`.
pub trait Store: Send + Sync {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// A cheap round trip, for readiness.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies the embedded migrations not yet applied (idempotent; on Postgres,
    /// concurrent replicas serialize on an advisory lock).
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every embedded migration and whether this database has it. Read-only: does not
    /// create the bookkeeping table.
    fn migration_status(
        &self,
    ) -> impl Future<Output = Result<Vec<MigrationInfo>, StoreError>> + Send;

    /// Stores a batch of findings in one transaction, skipping ids already stored, and
    /// updates the alerts of their tracks. Durable when it returns `Ok`; on `Err`
    /// nothing of the batch is stored. A finding that cannot be stored (a NUL character
    /// in a text field, a non-finite hotspot temperature) rejects the batch with
    /// [`StoreError::InvalidFinding`].
    fn insert_findings(
        &self,
        findings: &[IngestedFinding],
    ) -> impl Future<Output = Result<InsertReport, StoreError>> + Send;

    /// One finding by id.
    fn finding(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredFinding>, StoreError>> + Send;

    /// How many findings are stored (exact; a full count on Postgres).
    fn count_findings(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// A page of findings, newest received first: keyset pagination on
    /// (`received_at`, `id`) descending.
    fn list_findings(
        &self,
        query: &FindingQuery,
    ) -> impl Future<Output = Result<Page<StoredFinding>, StoreError>> + Send;

    /// One alert by id.
    fn alert(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<AlertRecord>, StoreError>> + Send;

    /// A page of alerts, newest created first: keyset pagination on (`created_at`,
    /// `id`) descending.
    fn list_alerts(
        &self,
        query: &AlertQuery,
    ) -> impl Future<Output = Result<Page<AlertRecord>, StoreError>> + Send;

    /// Applies an operator action to an alert and appends it to the audit trail, in one
    /// transaction. Returns the alert as it now is.
    fn record_alert_event(
        &self,
        event: &NewAlertEvent,
    ) -> impl Future<Output = Result<AlertRecord, StoreError>> + Send;

    /// An alert's audit trail, oldest first.
    fn alert_events(
        &self,
        alert_id: Uuid,
    ) -> impl Future<Output = Result<Vec<AlertEvent>, StoreError>> + Send;

    /// Keeps a message ingest could not use. NUL characters in the topic and reason
    /// (text columns) are replaced by U+FFFD; the payload is kept byte for byte.
    fn record_dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// How many dead letters are kept.
    fn dead_letter_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The newest dead letters, newest first (at most [`MAX_PAGE_LIMIT`]).
    fn list_dead_letters(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetterRecord>, StoreError>> + Send;

    /// Enrols a gateway (creating its site row when needed). An existing (site,
    /// gateway), revoked or not, is [`StoreError::GatewayExists`].
    fn add_gateway(
        &self,
        gateway: &NewGateway,
    ) -> impl Future<Output = Result<GatewayRecord, StoreError>> + Send;

    /// Every gateway, revoked ones included, by site and gateway id.
    fn list_gateways(&self) -> impl Future<Output = Result<Vec<GatewayRecord>, StoreError>> + Send;

    /// One gateway.
    fn gateway(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Option<GatewayRecord>, StoreError>> + Send;

    /// The gateway an MQTT username (`{site}/{gateway}`) names; `None` for an unknown
    /// or malformed username. Revoked gateways are returned: check
    /// [`GatewayRecord::is_revoked`].
    fn gateway_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<GatewayRecord>, StoreError>> + Send {
        async move {
            match parse_gateway_username(username) {
                Some((site, gateway)) => self.gateway(site, gateway).await,
                None => Ok(None),
            }
        }
    }

    /// Revokes a gateway (sets `revoked_at`, keeps the record). `false` when there is
    /// no such gateway or it was already revoked.
    fn revoke_gateway(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a `/status` (or Last Will), in arrival order: the Last Will's `ts` is
    /// from connect time, so ordering by `ts` would wrongly discard it. `last_seen_at`
    /// is `received_at`; absent fields (no buffer, no model) keep their previous value,
    /// and the camera list is replaced, and cameras upserted, only by an online status.
    /// `false` when the gateway is not enrolled (nothing stored).
    fn update_gateway_status(
        &self,
        site: &str,
        gateway: &str,
        status: &AgentStatus,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every camera a gateway has reported, by camera id.
    fn list_cameras(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Vec<CameraRecord>, StoreError>> + Send;

    /// Adds a telemetry sample to its minute (see [`TelemetryMinute`] for the rule).
    fn insert_telemetry(
        &self,
        site: &str,
        gateway: &str,
        telemetry: &Telemetry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A gateway's telemetry minutes with `since <= bucket_start < until`, oldest first.
    fn telemetry(
        &self,
        site: &str,
        gateway: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TelemetryMinute>, StoreError>> + Send;
}

/// Clamps a requested page size.
fn page_limit(limit: u32) -> usize {
    limit.clamp(1, MAX_PAGE_LIMIT) as usize
}

/// Cuts a `limit + 1` fetch into a page and its cursor.
fn into_page<T>(mut items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

/// Start of the minute `at` falls in.
fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let us = at.timestamp_micros();
    rows::from_micros(us - us.rem_euclid(60_000_000)).unwrap_or(at)
}

/// Text columns cannot hold NUL on Postgres; replace it on both backends alike.
fn text_without_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// u64 counters into signed 64-bit columns.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Signed 64-bit columns back into counters.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
