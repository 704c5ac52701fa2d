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
//! - Bearer tokens (sessions and API tokens) are kept only as their SHA-256. A lookup
//!   by hash refuses expired sessions, revoked tokens and disabled users in the very
//!   statement that records the use (`last_seen_at`, `last_used_at`); on SQLite a read
//!   comes first, so unknown tokens never take the write lock.
//! - Sites and structures are never deleted from under what refers to them: such a
//!   delete is [`StoreError::InUse`]. Users are disabled, never deleted. Every other state change (not
//!   alert actions, which have their own trail) belongs in the audit log
//!   ([`Store::audit`]); the caller writes it, the store does not.
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
use cursor::Listing;
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

    /// [`Store::insert_findings`] and an audit record in the same transaction: the
    /// record exists exactly when the rows do (an upload cut off by a crash leaves no
    /// finding without its record).
    fn insert_findings_audited(
        &self,
        findings: &[IngestedFinding],
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<InsertReport, StoreError>> + Send;

    /// One finding by id.
    fn finding(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredFinding>, StoreError>> + Send;

    /// How many findings are stored (exact; a full count on Postgres).
    fn count_findings(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// A page of findings, newest received first: keyset pagination on
    /// (`received_at`, `id`) descending. The text filter is a parameterised `LIKE`
    /// (`ILIKE` on Postgres) over site, gateway, camera, asset and component class:
    /// case-insensitive for ASCII letters on SQLite, for all letters on Postgres.
    fn list_findings(
        &self,
        query: &FindingQuery,
    ) -> impl Future<Output = Result<Page<StoredFinding>, StoreError>> + Send;

    /// One alert by id.
    fn alert(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<AlertRecord>, StoreError>> + Send;

    /// A page of alerts in the query's [`AlertSort`] order, keyset-paginated; a cursor
    /// of another order is [`StoreError::InvalidCursor`]. The text filter is as for
    /// [`Store::list_findings`].
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

    /// Records a verified `/status` (or Last Will) when it is fresh: its `ts` is newer
    /// than `status_at`, or it is an offline status whose `session` is the current one
    /// or newer (the Last Will, stamped at agent start, so older than the statuses of
    /// its run; it does not move `status_at` back). The check and the write are one
    /// statement, so concurrent statuses cannot both win. `last_seen_at` is
    /// `received_at`; absent fields (no buffer, no model) keep their previous value, and
    /// the camera list is replaced, and cameras upserted, only by an online status.
    fn update_gateway_status(
        &self,
        site: &str,
        gateway: &str,
        status: &AgentStatus,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<StatusOutcome, StoreError>> + Send;

    /// Every camera a gateway has reported, by camera id.
    fn list_cameras(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Vec<CameraRecord>, StoreError>> + Send;

    /// Adds a telemetry sample to its minute (see [`TelemetryMinute`] for the rule),
    /// only when it is newer than every sample of the gateway stored so far (a replay
    /// adds nothing). `false` when it was not.
    fn insert_telemetry(
        &self,
        site: &str,
        gateway: &str,
        telemetry: &Telemetry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A gateway's telemetry minutes with `since <= bucket_start < until`, oldest first.
    fn telemetry(
        &self,
        site: &str,
        gateway: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TelemetryMinute>, StoreError>> + Send;

    /// Creates a user (id and `created_at` assigned here). A taken username, disabled
    /// or not, is [`StoreError::UserExists`]; a username that is empty, longer than 64
    /// bytes or has whitespace or control characters is [`StoreError::InvalidInput`].
    fn add_user(
        &self,
        user: &NewUser,
    ) -> impl Future<Output = Result<UserRecord, StoreError>> + Send;

    /// One user by id.
    fn user(&self, id: Uuid)
        -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// One user by username (exact, case-sensitive).
    fn user_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// Every user, disabled ones included, by username.
    fn list_users(&self) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send;

    /// Disables (sets `disabled_at`, keeping an earlier one) or re-enables a user.
    /// Disabling also deletes the user's sessions, so re-enabling does not revive them;
    /// API tokens are kept (they work again once the user is enabled, unless revoked).
    /// `false` when there is no such user.
    fn set_user_disabled(
        &self,
        id: Uuid,
        disabled: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Changes a user's role. `false` when there is no such user.
    fn set_user_role(
        &self,
        id: Uuid,
        role: Role,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a login session (id assigned here, `last_seen_at` = `created_at`). The
    /// token hash must be lowercase hex SHA-256 ([`StoreError::InvalidInput`]); an
    /// unknown user is [`StoreError::NotFound`].
    fn create_session(
        &self,
        session: &NewSession,
    ) -> impl Future<Output = Result<SessionRecord, StoreError>> + Send;

    /// The session a token hash names and its user, moving `last_seen_at` up to `now`.
    /// `None` when there is none, it has expired (`expires_at <= now`) or the user is
    /// disabled.
    fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(SessionRecord, UserRecord)>, StoreError>> + Send;

    /// Ends a session (logout). `false` when there was none.
    fn delete_session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes every session with `expires_at <= now`; returns how many.
    fn delete_expired_sessions(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores an API token (id and `created_at` assigned here). The hash must be
    /// lowercase hex SHA-256 and each scope non-empty without whitespace
    /// ([`StoreError::InvalidInput`]); an unknown user is [`StoreError::NotFound`].
    fn create_api_token(
        &self,
        token: &NewApiToken,
    ) -> impl Future<Output = Result<ApiTokenRecord, StoreError>> + Send;

    /// The token a hash names and its user, setting `last_used_at` to `now` (the
    /// hub's clock). `None` when there is none, it is revoked, it expired by `now`, or
    /// the user is disabled.
    fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(ApiTokenRecord, UserRecord)>, StoreError>> + Send;

    /// A user's tokens, revoked ones included, oldest first.
    fn list_api_tokens(
        &self,
        user_id: Uuid,
    ) -> impl Future<Output = Result<Vec<ApiTokenRecord>, StoreError>> + Send;

    /// Revokes a token (sets `revoked_at`, keeps the record). `false` when there is no
    /// such token or it was already revoked.
    fn revoke_api_token(&self, id: Uuid) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Creates a site. An existing id (also one created by enrolling a gateway: use
    /// [`Store::update_site`]) is [`StoreError::AlreadyExists`].
    fn add_site(
        &self,
        site: &NewSite,
    ) -> impl Future<Output = Result<SiteRecord, StoreError>> + Send;

    /// Every site, by id.
    fn list_sites(&self) -> impl Future<Output = Result<Vec<SiteRecord>, StoreError>> + Send;

    /// One site.
    fn site(&self, id: &str)
        -> impl Future<Output = Result<Option<SiteRecord>, StoreError>> + Send;

    /// Sets a site's name and kind. `false` when there is no such site.
    fn update_site(&self, site: &NewSite) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes a site. [`StoreError::InUse`] while it has structures, assets or
    /// gateways; `false` when there is no such site.
    fn delete_site(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Creates a structure in a site. An unknown site is [`StoreError::NotFound`], an
    /// existing (site, id) [`StoreError::AlreadyExists`].
    fn add_structure(
        &self,
        structure: &NewStructure,
    ) -> impl Future<Output = Result<StructureRecord, StoreError>> + Send;

    /// A site's structures, by id.
    fn list_structures(
        &self,
        site: &str,
    ) -> impl Future<Output = Result<Vec<StructureRecord>, StoreError>> + Send;

    /// One structure.
    fn structure(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StructureRecord>, StoreError>> + Send;

    /// Sets a structure's name and kind. `false` when there is no such structure.
    fn update_structure(
        &self,
        structure: &NewStructure,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes a structure. [`StoreError::InUse`] while assets are on it; `false`
    /// when there is no such structure.
    fn delete_structure(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Creates an asset. An unknown site, or structure in that site, is
    /// [`StoreError::NotFound`]; an existing (site, id) [`StoreError::AlreadyExists`].
    fn add_asset(
        &self,
        asset: &NewAsset,
    ) -> impl Future<Output = Result<AssetRecord, StoreError>> + Send;

    /// Assets, of one site or of all, by site and id.
    fn list_assets(
        &self,
        site: Option<&str>,
    ) -> impl Future<Output = Result<Vec<AssetRecord>, StoreError>> + Send;

    /// One asset.
    fn asset(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<AssetRecord>, StoreError>> + Send;

    /// Sets an asset's structure, name, phase and class. An unknown structure is
    /// [`StoreError::NotFound`]; `false` when there is no such asset.
    fn update_asset(
        &self,
        asset: &NewAsset,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes an asset (findings naming it keep their copy of the id). `false` when
    /// there is no such asset.
    fn delete_asset(
        &self,
        site: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records an evidence blob's metadata, once: `true` when newly recorded, `false`
    /// when the hash was already known (the first record is kept). The hash must be
    /// lowercase hex SHA-256 ([`StoreError::InvalidInput`]).
    fn record_evidence(
        &self,
        evidence: &EvidenceRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One evidence blob's metadata.
    fn evidence(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<EvidenceRecord>, StoreError>> + Send;

    /// Appends to the audit log. NUL characters in text (and JSON strings) become
    /// U+FFFD, as for alert events.
    fn audit(&self, event: &AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest audit records, newest (highest id) first (at most
    /// [`MAX_PAGE_LIMIT`]).
    fn list_audit(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;
}

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
fn violation(err: &sqlx::Error) -> Option<sqlx::error::ErrorKind> {
    match err {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    }
}

/// A failed statement as a store error: `on_unique` when it broke a unique (or primary
/// key) constraint, `on_foreign_key` when it broke a foreign key, else as usual.
fn constraint_error(
    err: sqlx::Error,
    on_unique: impl FnOnce() -> StoreError,
    on_foreign_key: impl FnOnce() -> StoreError,
) -> StoreError {
    match violation(&err) {
        Some(sqlx::error::ErrorKind::UniqueViolation) => on_unique(),
        Some(sqlx::error::ErrorKind::ForeignKeyViolation) => on_foreign_key(),
        _ => err.into(),
    }
}

/// [`constraint_error`] for statements that can only break a unique constraint.
fn unique_error(err: sqlx::Error, on_unique: impl FnOnce() -> StoreError) -> StoreError {
    match violation(&err) {
        Some(sqlx::error::ErrorKind::UniqueViolation) => on_unique(),
        _ => err.into(),
    }
}

/// [`constraint_error`] for statements that can only break a foreign key.
fn foreign_key_error(err: sqlx::Error, on_foreign_key: impl FnOnce() -> StoreError) -> StoreError {
    match violation(&err) {
        Some(sqlx::error::ErrorKind::ForeignKeyViolation) => on_foreign_key(),
        _ => err.into(),
    }
}

/// Whether a statement failed on a foreign key.
fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
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
