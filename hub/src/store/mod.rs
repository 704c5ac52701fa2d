//! The hub's relational store (DESIGN.md §5): findings, alerts, gateways, telemetry,
//! dead letters, and the tables the HTTP API builds on.
//!
//! Each query is written once. A domain trait per part of the store, each in its own
//! module with its SQL: [`IngestStore`] (findings, dead letters), [`AlertStore`],
//! [`FleetStore`] (gateways, cameras, telemetry), [`AccountStore`] (users, sessions,
//! tokens), [`SiteStore`] (sites, structures, assets), [`EvidenceIndex`],
//! [`AuditLog`], [`NotificationStore`] (alert transitions, the notification outbox,
//! escalations; its invariants are in its module) and [`FleetAlarmStore`] (alerts the
//! hub raises about the fleet); [`Store`] is all of them plus
//! migrations. Every trait is implemented
//! once, for any [`Backed`] type: [`SqliteStore`] (the embedded default, a file next to
//! the binary), [`PgStore`] (the fleet store) and [`AnyStore`] (either, picked from a
//! URL). The statements run through the dialect layer (`sql.rs`: `$n` placeholders on
//! both engines, timestamps and JSON encoded per engine); the few whose text differs
//! (bulk inserts, `GREATEST` against `max`, the token lookups) are chosen by
//! [`Backend`] next to each other, and the engine modules (`sqlite.rs`, `postgres.rs`)
//! hold only connecting, migrations and bulk inserts. One conformance suite
//! (`tests/conformance.rs`) runs against both engines.
//!
//! # Invariants
//!
//! - **Exactly-once findings.** A finding's UUIDv7 is its primary key and every insert
//!   is `ON CONFLICT (id) DO NOTHING`. [`IngestStore::insert_findings`] commits a batch in one
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
//! - Bearer tokens (sessions and API tokens) are kept only as their SHA-256. A lookup
//!   by hash refuses expired sessions, revoked tokens and disabled users in the very
//!   statement that records the use (`last_seen_at`, `last_used_at`); on SQLite a read
//!   comes first, so unknown tokens never take the write lock.
//! - Sites and structures are never deleted from under what refers to them: such a
//!   delete is [`StoreError::InUse`]. Users are disabled, never deleted. Every other state change (not
//!   alert actions, which have their own trail) belongs in the audit log
//!   ([`AuditLog::audit`]); the caller writes it, the store does not.
//! - The Postgres `findings` table is not partitioned (see the migration's header: a
//!   `received_at` partition key would break `ON CONFLICT (id)`; partition by `id`
//!   ranges when it is needed).
//! - Findings have no foreign keys: ingest must never refuse a finding (and so withhold
//!   its ack) because its site, asset or evidence is not known yet.

mod accounts;
mod alarms;
mod alerts;
mod any;
mod audit;
mod cursor;
mod error;
mod fleet;
mod gateway_config;
mod ingest;
mod model;
mod notifications;
mod postgres;
mod records;
mod retention;
mod rollouts;
mod rows;
mod sites;
mod sql;
mod sqlite;
mod trends;

pub use accounts::AccountStore;
pub use alarms::{FleetAlarmStore, FleetCondition, HUB_ACTOR};
pub use alerts::AlertStore;
pub use any::AnyStore;
pub use audit::{
    entry_hash, personal_digest, AuditLog, GENESIS_HASH, MAX_REPORTED_PROBLEMS, PSEUDONYM_PREFIX,
};
pub use cursor::Cursor;
use cursor::Listing;
pub use error::StoreError;
pub use fleet::FleetStore;
pub use gateway_config::{
    ConfigFailure, DesiredChange, DesiredRecord, GatewayConfigStore, ReportedConfig,
};
pub use ingest::IngestStore;
pub use model::*;
pub use notifications::{
    AlertTransition, ClaimedNotification, DeliveryOutcome, EscalationStep, GatewaySent,
    NotificationPolicy, NotificationRecord, NotificationStatus, NotificationStore, OutboxDepth,
    PlannedEscalation, PlannedNotification, RoutePlan, StoredSettings, TransitionKind,
};
pub use postgres::PgStore;
pub use records::EvidenceIndex;
pub use retention::{FindingKey, RetentionStore};
pub use rollouts::{
    DesiredModelRecord, GatewayKey, GatewayRolloutState, ModelFailure, ModelRecord, ReportedModel,
    RolloutGatewayRecord, RolloutPlan, RolloutRecord, RolloutSnapshot, RolloutState, RolloutStore,
};
pub use sites::SiteStore;
pub use sql::Db;
use sql::{Sql, Tx};
pub use sqlite::SqliteStore;
pub use trends::TrendStore;

use chitti_common::protocol::{AgentStatus, Telemetry};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
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

/// A store whose statements run on a [`Db`]: the three store types. Every domain trait
/// below is implemented once, for every `Backed` type, so a new query is written in one
/// place (its domain's module) and no store type forwards anything by hand.
pub trait Backed: Send + Sync {
    /// The pool this store's statements run on.
    fn db(&self) -> Db<'_>;
}

/// The hub's whole store: every domain, plus migrations and readiness. Every method is
/// one short transaction (or one query); futures are `Send`, so callers can hold a
/// `S: Store` across `tokio::spawn`. A handler that needs one domain can ask for that
/// trait alone (`S: AlertStore`).
pub trait Store:
    Backed
    + IngestStore
    + AlertStore
    + FleetStore
    + AccountStore
    + SiteStore
    + EvidenceIndex
    + AuditLog
    + NotificationStore
    + FleetAlarmStore
    + GatewayConfigStore
    + RolloutStore
    + RetentionStore
    + TrendStore
{
    /// Which database this is.
    fn backend(&self) -> Backend {
        self.db().backend()
    }

    /// A cheap round trip, for readiness: on Postgres also that the server is the
    /// primary, not a standby a proxy still (or wrongly) leads to.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            match self.db() {
                Db::Sqlite(_) => {
                    self.db().execute(Sql::new("SELECT 1")).await?;
                }
                Db::Postgres(_) => {
                    let row = self
                        .db()
                        .fetch_one(Sql::new("SELECT pg_is_in_recovery() AS standby"))
                        .await?;
                    if row.get::<bool>("standby")? {
                        return Err(StoreError::Standby);
                    }
                }
            }
            Ok(())
        }
    }

    /// Applies the embedded migrations not yet applied (idempotent; on Postgres,
    /// concurrent replicas serialize on an advisory lock).
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            match self.db() {
                Db::Sqlite(pool) => sqlite::MIGRATOR.run(pool).await?,
                Db::Postgres(pool) => postgres::MIGRATOR.run(pool).await?,
            }
            // Rows written before the audit chain existed (or by an older replica).
            let sealed = self.seal_audit_rows().await?;
            if sealed > 0 {
                tracing::info!(sealed, "audit rows chained");
            }
            Ok(())
        }
    }

    /// Every embedded migration and whether this database has it. Read-only: does not
    /// create the bookkeeping table.
    fn migration_status(
        &self,
    ) -> impl Future<Output = Result<Vec<MigrationInfo>, StoreError>> + Send {
        async move {
            let db = self.db();
            let (migrator, present) = match db {
                Db::Sqlite(_) => (
                    &sqlite::MIGRATOR,
                    "SELECT count(*) > 0 AS present FROM sqlite_master \
                     WHERE type = 'table' AND name = '_sqlx_migrations'",
                ),
                Db::Postgres(_) => (
                    &postgres::MIGRATOR,
                    "SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS present",
                ),
            };
            let applied: HashSet<i64> = if db.fetch_one(Sql::new(present)).await?.get("present")? {
                let done = Sql::new("SELECT version FROM _sqlx_migrations WHERE success");
                db.fetch_all(done)
                    .await?
                    .iter()
                    .map(|row| row.get::<i64>("version"))
                    .collect::<Result<_, _>>()?
            } else {
                HashSet::new()
            };
            Ok(migrator
                .iter()
                .filter(|m| !m.migration_type.is_down_migration())
                .map(|m| MigrationInfo {
                    version: m.version,
                    description: m.description.to_string(),
                    applied: applied.contains(&m.version),
                })
                .collect())
        }
    }
}

impl<T: Backed> Store for T {}

/// Longest username, in bytes.
const MAX_USERNAME_LEN: usize = 64;

/// Whether `username` could be an account's (1 to 64 bytes, no whitespace or control
/// characters): what sign-in checks before it spends a password hash.
pub fn is_valid_username(username: &str) -> bool {
    check_username(username).is_ok()
}

fn check_username(username: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidInput {
        what: "username",
        reason,
    };
    if username.is_empty() || username.len() > MAX_USERNAME_LEN {
        return Err(invalid("use 1 to 64 bytes"));
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("whitespace and control characters are not allowed"));
    }
    Ok(())
}

/// A SHA-256 as the store keeps it: 64 lowercase hex digits.
fn check_sha256(what: &'static str, hash: &str) -> Result<(), StoreError> {
    let ok = hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            what,
            reason: "expected 64 lowercase hex digits (a sha-256)",
        })
    }
}

/// Scopes into their stored form: space-separated.
fn join_scopes(scopes: &[String]) -> Result<String, StoreError> {
    if scopes
        .iter()
        .any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(StoreError::InvalidInput {
            what: "scope",
            reason: "scopes must be non-empty, without whitespace or control characters",
        });
    }
    Ok(scopes.join(" "))
}

fn split_scopes(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

fn evidence_size(size: u64) -> Result<i64, StoreError> {
    i64::try_from(size).map_err(|_| StoreError::InvalidInput {
        what: "evidence size",
        reason: "larger than 2^63 - 1 bytes",
    })
}

/// Checks the ids of a structure.
fn check_structure_ids(s: &NewStructure) -> Result<(), StoreError> {
    chitti_common::protocol::validate_id("site", &s.site)?;
    chitti_common::protocol::validate_id("structure", &s.id)?;
    Ok(())
}

/// Checks the ids of an asset.
fn check_asset_ids(a: &NewAsset) -> Result<(), StoreError> {
    chitti_common::protocol::validate_id("site", &a.site)?;
    chitti_common::protocol::validate_id("asset", &a.id)?;
    if let Some(structure) = &a.structure {
        chitti_common::protocol::validate_id("structure", structure)?;
    }
    Ok(())
}

/// The kind of constraint a failed statement violated, if that is why it failed.
fn violation(err: &StoreError) -> Option<sqlx::error::ErrorKind> {
    match err {
        StoreError::Database(sqlx::Error::Database(db)) => Some(db.kind()),
        _ => None,
    }
}

/// A failed statement as a store error: `on_unique` when it broke a unique (or primary
/// key) constraint, `on_foreign_key` when it broke a foreign key, else as usual.
fn constraint_error(
    err: StoreError,
    on_unique: impl FnOnce() -> StoreError,
    on_foreign_key: impl FnOnce() -> StoreError,
) -> StoreError {
    match violation(&err) {
        Some(sqlx::error::ErrorKind::UniqueViolation) => on_unique(),
        Some(sqlx::error::ErrorKind::ForeignKeyViolation) => on_foreign_key(),
        _ => err,
    }
}

/// [`constraint_error`] for statements that can only break a unique constraint.
fn unique_error(err: StoreError, on_unique: impl FnOnce() -> StoreError) -> StoreError {
    match violation(&err) {
        Some(sqlx::error::ErrorKind::UniqueViolation) => on_unique(),
        _ => err,
    }
}

/// [`constraint_error`] for statements that can only break a foreign key.
fn foreign_key_error(err: StoreError, on_foreign_key: impl FnOnce() -> StoreError) -> StoreError {
    match violation(&err) {
        Some(sqlx::error::ErrorKind::ForeignKeyViolation) => on_foreign_key(),
        _ => err,
    }
}

/// Whether a statement failed on a foreign key.
fn is_foreign_key_violation(err: &StoreError) -> bool {
    matches!(
        violation(err),
        Some(sqlx::error::ErrorKind::ForeignKeyViolation)
    )
}

/// [`StoreError::InUse`] naming what still refers to `{what} {id}`, if anything does.
fn in_use(what: &str, id: &str, users: &[(&str, bool)]) -> Option<StoreError> {
    let by: Vec<&str> = users
        .iter()
        .filter(|(_, used)| *used)
        .map(|(name, _)| *name)
        .collect();
    (!by.is_empty()).then(|| StoreError::InUse {
        what: format!("{what} {id} ({})", by.join(", ")),
    })
}

/// A `LIKE` pattern (escape character `\`) matching text that contains `text`: its
/// `%`, `_` and `\` match themselves. NUL becomes U+FFFD, as in stored text.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text_without_nul(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The cursor listing of an alert order.
fn alert_listing(sort: AlertSort) -> Listing {
    match sort {
        AlertSort::CreatedDesc => Listing::Alerts,
        AlertSort::WorstLevelDesc => Listing::AlertsByWorstLevel,
        AlertSort::UpdatedDesc => Listing::AlertsByUpdated,
    }
}

/// Where an alert list in this order continues after `a`.
fn alert_cursor(sort: AlertSort, a: &AlertRecord) -> Cursor {
    let listing = alert_listing(sort);
    match sort {
        AlertSort::CreatedDesc => Cursor::new(listing, a.created_at, a.id),
        AlertSort::UpdatedDesc => Cursor::new(listing, a.updated_at, a.id),
        AlertSort::WorstLevelDesc => {
            Cursor::ranked(listing, i64::from(a.worst_level), a.created_at, a.id)
        }
    }
}

impl Db<'_> {
    /// Rows in `table`: a name from the code, never from input (checked: lowercase
    /// letters and `_` only).
    pub async fn count_rows(self, table: &str) -> Result<u64, StoreError> {
        check_table_name(table)?;
        self.fetch_one(Sql::new(format!("SELECT count(*) AS n FROM {table}")))
            .await?
            .count("n")
    }

    /// Whether `table` exists.
    pub async fn has_table(self, table: &str) -> Result<bool, StoreError> {
        check_table_name(table)?;
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT count(*) > 0 AS present FROM sqlite_master \
                 WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => "SELECT to_regclass($1) IS NOT NULL AS present",
        };
        self.fetch_one(Sql::new(sql).bind(table))
            .await?
            .get("present")
    }
}

fn check_table_name(table: &str) -> Result<(), StoreError> {
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Err(StoreError::InvalidInput {
            what: "table name",
            reason: "lowercase letters and _ only",
        });
    }
    Ok(())
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

/// Every store trait, for code that uses the whole store (tools, tests, benchmarks):
/// `use chitti_hub::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        AccountStore, AlertStore, AuditLog, Backed, EvidenceIndex, FleetAlarmStore, FleetStore,
        GatewayConfigStore, IngestStore, NotificationStore, RetentionStore, RolloutStore,
        SiteStore, Store, TrendStore,
    };
}
