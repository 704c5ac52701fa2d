//! The audit log: an append-only hash chain of every state change other than an alert
//! action (those have their own trail), readable with filters, verifiable, and able to
//! forget a departed person without breaking.
//!
//! Each row has its place `seq` (1, 2, 3 … with no gaps), the previous row's hash and its
//! own: `hash = SHA-256(canonical JSON of ["chitti-audit/1", seq, prev_hash, at (µs),
//! action, actor_digest, target_digest, address_digest, detail])`, where each personal
//! field enters only as `digest = SHA-256(salt ‖ JSON of the value)` with a random
//! 16-byte salt of its own. Appending reads and updates the one-row `audit_chain_head`
//! in the same transaction as the insert (and as the change it records, where the
//! caller has one), under that row's lock: appends from several replicas serialise, and
//! a rolled-back change leaves no row. [`AuditLog::verify_audit_chain`] recomputes
//! everything; pseudonymising ([`AuditLog::pseudonymise_user`]) replaces a value and
//! drops its salt, which keeps the digest (and so the chain) valid but makes guessing
//! the old value from it impossible.
//!
//! Callers write the audit record; the store does not decide what is audited.

use super::sql::{Row, Sql, Tx};
use super::*;
use sha2::{Digest, Sha256};

/// The chain's first `prev_hash`.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain format's name, hashed into every entry.
const CHAIN_VERSION: &str = "chitti-audit/1";

/// Rows read per query when verifying or sealing.
const CHAIN_BATCH: i64 = 1000;

/// Problems a verification lists before it stops listing (it still counts rows).
pub const MAX_REPORTED_PROBLEMS: usize = 100;

/// Prefix of the pseudonyms [`AuditLog::pseudonymise_user`] gives.
pub const PSEUDONYM_PREFIX: &str = "former-user-";

const AUDIT_COLUMNS: &str = "id, seq, at, actor, action, target, from_address, detail, \
     prev_hash, hash, actor_salt, actor_digest, target_salt, target_digest, address_salt, \
     address_digest";

/// The audit log.
pub trait AuditLog: Backed {
    /// Appends to the audit log (its own transaction). NUL characters in text (and JSON
    /// strings) become U+FFFD, as for alert events.
    fn audit(&self, event: &AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            append(&mut tx, event).await?;
            tx.commit().await
        }
    }

    /// The newest audit records, newest first (at most [`MAX_PAGE_LIMIT`]).
    fn list_audit(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send {
        async move {
            let q = AuditQuery {
                limit,
                ..AuditQuery::default()
            };
            Ok(self.audit_page(&q).await?.items)
        }
    }

    /// A page of the audit log, newest (highest `seq`) first, filtered by `q`.
    fn audit_page(
        &self,
        q: &AuditQuery,
    ) -> impl Future<Output = Result<Page<AuditRecord>, StoreError>> + Send {
        async move {
            let limit = page_limit(q.limit);
            let mut sql = Sql::new(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq IS NOT NULL"
            ));
            for (column, value) in [
                ("actor", &q.actor),
                ("target", &q.target),
                ("action", &q.action),
            ] {
                let Some(value) = value else { continue };
                match value.strip_suffix('*') {
                    // `user.*`: every action of that family.
                    Some(prefix) if column == "action" => {
                        sql.push(" AND substr(action, 1, length(")
                            .push_bind(prefix.to_string())
                            .push(")) = ")
                            .push_bind(prefix.to_string());
                    }
                    _ => {
                        sql.push(&format!(" AND {column} = "))
                            .push_bind(value.clone());
                    }
                }
            }
            if let Some(since) = q.since {
                sql.push(" AND at >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                sql.push(" AND at < ").push_bind(until);
            }
            if let Some(after) = &q.after {
                let (_, id) = after.key(Listing::Audit)?;
                sql.push(" AND seq < ").push_bind(id.as_u64_pair().1 as i64);
            }
            sql.push(" ORDER BY seq DESC LIMIT ")
                .push_bind(limit as i64 + 1);
            let items = self
                .db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(record_from_row)
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(into_page(items, limit, |r| {
                Cursor::new(
                    Listing::Audit,
                    r.event.at,
                    Uuid::from_u64_pair(0, r.seq as u64),
                )
            }))
        }
    }

    /// Chains the rows that have no place yet (written before the chain existed, or by
    /// an older hub during a rolling upgrade), oldest first; returns how many. Run after
    /// every migration.
    fn seal_audit_rows(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut sealed = 0;
            loop {
                let mut tx = self.db().begin_write().await?;
                let mut head = lock_head(&mut tx).await?;
                let rows = tx
                    .fetch_all(
                        Sql::new(format!(
                            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq IS NULL \
                             ORDER BY id LIMIT $1"
                        ))
                        .bind(CHAIN_BATCH),
                    )
                    .await?;
                if rows.is_empty() {
                    return Ok(sealed);
                }
                for row in &rows {
                    let id: i64 = row.get("id")?;
                    let event = event_from_row(row)?;
                    let entry = ChainEntry::new(&head, &event)?;
                    tx.execute(
                        entry
                            .bind(Sql::new(
                                "UPDATE audit_log SET seq = $1, prev_hash = $2, hash = $3, \
                         actor_salt = $4, actor_digest = $5, target_salt = $6, \
                         target_digest = $7, address_salt = $8, address_digest = $9 \
                         WHERE id = $10",
                            ))
                            .bind(id),
                    )
                    .await?;
                    head = entry.head();
                    sealed += 1;
                }
                store_head(&mut tx, &head).await?;
                tx.commit().await?;
            }
        }
    }

    /// Recomputes the whole chain: every digest whose salt is kept, every hash, every
    /// link, the head; pseudonymised values must be pseudonyms a later
    /// `user.pseudonymise` row announced. Reads a thousand rows a query.
    fn verify_audit_chain(
        &self,
    ) -> impl Future<Output = Result<AuditVerification, StoreError>> + Send {
        async move {
            let db = self.db();
            let mut report = AuditVerification::default();
            let (seq, hash) = db.audit_head().await?;
            let head = ChainHead { seq, hash };
            let mut last = ChainHead::genesis();
            let mut announced: HashSet<String> = HashSet::new();
            let mut pseudonymised: Vec<(i64, String)> = Vec::new();
            loop {
                let rows = db
                    .fetch_all(
                        Sql::new(format!(
                            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 \
                             ORDER BY seq LIMIT $2"
                        ))
                        .bind(last.seq)
                        .bind(CHAIN_BATCH),
                    )
                    .await?;
                if rows.is_empty() {
                    break;
                }
                for row in &rows {
                    let stored = StoredEntry::from_row(row)?;
                    stored.check(&last, &mut report, &mut pseudonymised);
                    if stored.event.action == "user.pseudonymise" {
                        if let Some(p) = stored.event.detail["pseudonym"].as_str() {
                            announced.insert(p.to_string());
                        }
                    }
                    report.rows += 1;
                    last = ChainHead {
                        seq: stored.seq,
                        hash: stored.hash.clone(),
                    };
                }
            }
            for (seq, value) in pseudonymised {
                if !announced.contains(&value) {
                    report.problem(
                        Some(seq),
                        format!(
                            "a salt was removed but {value:?} is no pseudonym a \
                             user.pseudonymise entry announced (a personal field edited)"
                        ),
                    );
                }
            }
            let unchained = db
                .fetch_one(Sql::new(
                    "SELECT count(*) AS n FROM audit_log WHERE seq IS NULL",
                ))
                .await?
                .count("n")?;
            if unchained > 0 {
                report.problem(
                    None,
                    format!("{unchained} rows are not in the chain (no seq: inserted around it)"),
                );
            }
            if head.seq != last.seq || head.hash != last.hash {
                report.problem(
                    None,
                    format!(
                        "the chain head says seq {} ({}) but the newest row is seq {} ({}): \
                         rows at the end were deleted, or the head was edited",
                        head.seq,
                        short(&head.hash),
                        last.seq,
                        short(&last.hash)
                    ),
                );
            }
            report.head_seq = head.seq;
            report.head_hash = head.hash;
            Ok(report)
        }
    }

    /// Pseudonymises a departed user (GDPR): the account, which must be disabled, is
    /// renamed to a new pseudonym (`former-user-` and 8 hex digits); in the audit log the
    /// user name becomes the pseudonym where it is the actor or the target (and the
    /// address of the rows it acted in is removed), each replaced field's salt is
    /// dropped; alert trails get the pseudonym as actor and as assignee. A `user.pseudonymise` row by
    /// `by` announces the pseudonym (never the name). The chain stays valid.
    fn pseudonymise_user(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Pseudonymised, StoreError>> + Send {
        async move {
            let backend = self.db().backend();
            let mut tx = self.db().begin_write().await?;
            // The head's lock first: no append interleaves with the rewrite.
            lock_head(&mut tx).await?;
            let user = tx
                .fetch_optional(
                    Sql::new("SELECT username, disabled_at FROM users WHERE id = $1").bind(id),
                )
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: "user",
                    id: id.to_string(),
                })?;
            let username: String = user.get("username")?;
            if user.opt_time("disabled_at")?.is_none() {
                return Err(StoreError::InvalidInput {
                    what: "user",
                    reason: "disable the account before pseudonymising it",
                });
            }
            let pseudonym = format!(
                "{PSEUDONYM_PREFIX}{}",
                Personal::new(None)?.salt.split_at(8).0
            );
            tx.execute(
                Sql::new("UPDATE users SET username = $1 WHERE id = $2")
                    .bind(pseudonym.as_str())
                    .bind(id),
            )
            .await?;
            let mut changed = tx
                .execute(
                    Sql::new(
                        "UPDATE audit_log SET actor = $1, actor_salt = NULL, \
                         from_address = NULL, address_salt = NULL \
                         WHERE actor = $2",
                    )
                    .bind(pseudonym.as_str())
                    .bind(username.as_str()),
                )
                .await?;
            changed += tx
                .execute(
                    Sql::new(
                        "UPDATE audit_log SET target = $1, target_salt = NULL \
                         WHERE target = $2",
                    )
                    .bind(pseudonym.as_str())
                    .bind(username.as_str()),
                )
                .await?;
            let alert_events = tx
                .execute(
                    Sql::new(
                        "UPDATE alert_events SET actor = $1, from_address = NULL \
                         WHERE actor = $2",
                    )
                    .bind(pseudonym.as_str())
                    .bind(username.as_str()),
                )
                .await?;
            // Assignments name the assignee in their detail.
            let assignee = match backend {
                Backend::Sqlite => {
                    "UPDATE alert_events SET detail = json_set(detail, '$.assignee', $1) \
                     WHERE json_extract(detail, '$.assignee') = $2"
                }
                Backend::Postgres => {
                    "UPDATE alert_events \
                     SET detail = jsonb_set(detail, '{assignee}', to_jsonb($1::text)) \
                     WHERE detail->>'assignee' = $2"
                }
            };
            tx.execute(
                Sql::new(assignee)
                    .bind(pseudonym.as_str())
                    .bind(username.as_str()),
            )
            .await?;
            append(
                &mut tx,
                &AuditEvent {
                    at,
                    actor: by.to_string(),
                    action: "user.pseudonymise".into(),
                    target: pseudonym.clone(),
                    from_address: None,
                    detail: serde_json::json!({
                        "pseudonym": pseudonym,
                        "audit_rows": changed,
                        "alert_events": alert_events,
                    }),
                },
            )
            .await?;
            tx.commit().await?;
            Ok(Pseudonymised {
                pseudonym,
                audit_rows: changed,
                alert_events,
            })
        }
    }
}

impl<T: Backed> AuditLog for T {}

impl Db<'_> {
    /// The audit chain head's (seq, hash).
    pub async fn audit_head(self) -> Result<(i64, String), StoreError> {
        let row = self
            .fetch_one(Sql::new(
                "SELECT seq, hash FROM audit_chain_head WHERE id = 1",
            ))
            .await?;
        Ok((row.get("seq")?, row.get("hash")?))
    }
}

/// Appends `event` to the chain inside `tx` (which must be a write transaction: it
/// takes the chain-head lock until `tx` ends). Returns the new row's `seq`.
pub(crate) async fn append(tx: &mut Tx, event: &AuditEvent) -> Result<i64, StoreError> {
    let head = lock_head(tx).await?;
    let event = clean(event);
    let entry = ChainEntry::new(&head, &event)?;
    tx.execute(
        entry
            .bind(Sql::new(
                "INSERT INTO audit_log (seq, prev_hash, hash, actor_salt, actor_digest, \
                 target_salt, target_digest, address_salt, address_digest, \
                 at, actor, action, target, from_address, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            ))
            .bind(rows::to_micros(event.at))
            .bind(event.actor.as_str())
            .bind(event.action.as_str())
            .bind(event.target.as_str())
            .bind(event.from_address.clone())
            .bind(sql::json_arg(Some(event.detail.to_string()))),
    )
    .await?;
    store_head(tx, &entry.head()).await?;
    Ok(entry.seq)
}

/// `event` as it will be stored: NUL replaced, time to the microsecond (what is hashed
/// must be what is read back).
fn clean(event: &AuditEvent) -> AuditEvent {
    let detail = rows::json_without_nul(event.detail.to_string());
    AuditEvent {
        at: rows::to_micros(event.at),
        actor: text_without_nul(&event.actor).into_owned(),
        action: text_without_nul(&event.action).into_owned(),
        target: text_without_nul(&event.target).into_owned(),
        from_address: event
            .from_address
            .as_deref()
            .map(|a| text_without_nul(a).into_owned()),
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    }
}

/// The newest row's place and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainHead {
    seq: i64,
    hash: String,
}

impl ChainHead {
    fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

async fn lock_head(tx: &mut Tx) -> Result<ChainHead, StoreError> {
    let backend = match tx {
        Tx::Sqlite(_) => Backend::Sqlite,
        Tx::Postgres(_) => Backend::Postgres,
    };
    let row = tx
        .fetch_one(Sql::new(format!(
            "SELECT seq, hash FROM audit_chain_head WHERE id = 1{}",
            backend.for_update()
        )))
        .await?;
    Ok(ChainHead {
        seq: row.get("seq")?,
        hash: row.get("hash")?,
    })
}

async fn store_head(tx: &mut Tx, head: &ChainHead) -> Result<(), StoreError> {
    tx.execute(
        Sql::new("UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(head.seq)
            .bind(head.hash.as_str()),
    )
    .await?;
    Ok(())
}

/// A salted digest of one personal field.
#[derive(Debug, Clone)]
struct Personal {
    salt: String,
    digest: String,
}

impl Personal {
    fn new(value: Option<&str>) -> Result<Self, StoreError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| StoreError::InvalidInput {
            what: "audit salt",
            reason: "the system has no randomness",
        })?;
        let salt = hex::encode(salt);
        Ok(Self {
            digest: personal_digest(&salt, value),
            salt,
        })
    }
}

/// `SHA-256(salt ‖ JSON of value)`, hex; `None` is JSON `null`.
pub fn personal_digest(salt_hex: &str, value: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(salt_hex.as_bytes());
    h.update(serde_json::to_string(&value).unwrap_or_default().as_bytes());
    hex::encode(h.finalize())
}

/// A row's hash (see the module documentation).
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    seq: i64,
    prev_hash: &str,
    at: DateTime<Utc>,
    action: &str,
    actor_digest: &str,
    target_digest: &str,
    address_digest: &str,
    detail: &serde_json::Value,
) -> String {
    let doc = serde_json::json!([
        CHAIN_VERSION,
        seq,
        prev_hash,
        at.timestamp_micros(),
        action,
        actor_digest,
        target_digest,
        address_digest,
        canonical(detail),
    ]);
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// `v` with every object's keys in byte order, whatever serde_json's map keeps.
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical).collect())
        }
        other => other.clone(),
    }
}

/// A new row's chain fields.
struct ChainEntry {
    seq: i64,
    prev_hash: String,
    hash: String,
    actor: Personal,
    target: Personal,
    address: Personal,
}

impl ChainEntry {
    fn new(head: &ChainHead, event: &AuditEvent) -> Result<Self, StoreError> {
        let actor = Personal::new(Some(&event.actor))?;
        let target = Personal::new(Some(&event.target))?;
        let address = Personal::new(event.from_address.as_deref())?;
        let seq = head.seq + 1;
        let hash = entry_hash(
            seq,
            &head.hash,
            event.at,
            &event.action,
            &actor.digest,
            &target.digest,
            &address.digest,
            &event.detail,
        );
        Ok(Self {
            seq,
            prev_hash: head.hash.clone(),
            hash,
            actor,
            target,
            address,
        })
    }

    /// Binds `$1`…`$9`: seq, prev_hash, hash, then salt and digest of actor, target,
    /// address.
    fn bind(&self, sql: Sql) -> Sql {
        sql.bind(self.seq)
            .bind(self.prev_hash.as_str())
            .bind(self.hash.as_str())
            .bind(self.actor.salt.as_str())
            .bind(self.actor.digest.as_str())
            .bind(self.target.salt.as_str())
            .bind(self.target.digest.as_str())
            .bind(self.address.salt.as_str())
            .bind(self.address.digest.as_str())
    }

    fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// A chained row as read back, for verification.
struct StoredEntry {
    seq: i64,
    prev_hash: String,
    hash: String,
    event: AuditEvent,
    /// (field, value, salt, digest) of actor, target, address.
    personal: [(&'static str, Option<String>, Option<String>, String); 3],
}

impl StoredEntry {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        let event = event_from_row(row)?;
        let text = |c: &str| -> Result<String, StoreError> {
            row.get::<Option<String>>(c)?
                .ok_or_else(|| StoreError::corrupt("audit chain field", c))
        };
        Ok(Self {
            seq: row.get("seq")?,
            prev_hash: text("prev_hash")?,
            hash: text("hash")?,
            personal: [
                (
                    "actor",
                    Some(event.actor.clone()),
                    row.get("actor_salt")?,
                    text("actor_digest")?,
                ),
                (
                    "target",
                    Some(event.target.clone()),
                    row.get("target_salt")?,
                    text("target_digest")?,
                ),
                (
                    "from_address",
                    event.from_address.clone(),
                    row.get("address_salt")?,
                    text("address_digest")?,
                ),
            ],
            event,
        })
    }

    /// Adds to `report` what is wrong with this row after `last`.
    fn check(
        &self,
        last: &ChainHead,
        report: &mut AuditVerification,
        pseudonymised: &mut Vec<(i64, String)>,
    ) {
        let seq = Some(self.seq);
        if self.seq != last.seq + 1 {
            report.problem(
                seq,
                format!(
                    "seq jumps from {} to {}: rows were deleted",
                    last.seq, self.seq
                ),
            );
        }
        if self.prev_hash != last.hash {
            report.problem(
                seq,
                format!(
                    "prev_hash {} is not the previous row's hash {}: a row before it was \
                     deleted or rewritten",
                    short(&self.prev_hash),
                    short(&last.hash)
                ),
            );
        }
        for (field, value, salt, digest) in &self.personal {
            match salt {
                Some(salt) if personal_digest(salt, value.as_deref()) != *digest => {
                    report.problem(seq, format!("{field} was edited (its digest differs)"));
                }
                Some(_) => {}
                // Pseudonymised: the value must be an announced pseudonym (addresses are
                // removed, never replaced).
                None => match value {
                    Some(v) => pseudonymised.push((self.seq, v.clone())),
                    None if *field == "from_address" => {}
                    None => report.problem(seq, format!("{field} is missing")),
                },
            }
        }
        let hash = entry_hash(
            self.seq,
            &self.prev_hash,
            self.event.at,
            &self.event.action,
            &self.personal[0].3,
            &self.personal[1].3,
            &self.personal[2].3,
            &self.event.detail,
        );
        if hash != self.hash {
            report.problem(
                seq,
                "its content was edited (time, action or detail: the hash differs)".into(),
            );
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn event_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        at: row.time("at")?,
        actor: row.get("actor")?,
        action: row.get("action")?,
        target: row.get("target")?,
        from_address: row.get("from_address")?,
        detail: row.json("detail", "audit detail")?,
    })
}

fn record_from_row(row: &Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: row.get("id")?,
        seq: row.get("seq")?,
        hash: row.get::<Option<String>>("hash")?.unwrap_or_default(),
        pseudonymised: row.get::<Option<String>>("actor_salt")?.is_none()
            || row.get::<Option<String>>("target_salt")?.is_none(),
        event: event_from_row(row)?,
    })
}

impl AuditVerification {
    fn problem(&mut self, seq: Option<i64>, what: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_REPORTED_PROBLEMS {
            self.problems.push(AuditProblem { seq, what });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_does_not_depend_on_key_order_and_changes_with_every_field() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let a = serde_json::json!({"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": null}});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap();
        let h = |seq, prev: &str, action: &str, d1: &str, detail: &serde_json::Value| {
            entry_hash(seq, prev, at, action, d1, "t", "f", detail)
        };
        let base = h(1, GENESIS_HASH, "user.add", "d", &a);
        assert_eq!(base, h(1, GENESIS_HASH, "user.add", "d", &b));
        assert_ne!(base, h(2, GENESIS_HASH, "user.add", "d", &a));
        assert_ne!(base, h(1, "1", "user.add", "d", &a));
        assert_ne!(base, h(1, GENESIS_HASH, "user.update", "d", &a));
        assert_ne!(base, h(1, GENESIS_HASH, "user.add", "e", &a));
        assert_ne!(
            base,
            h(
                1,
                GENESIS_HASH,
                "user.add",
                "d",
                &serde_json::json!({"b": 2})
            )
        );
        let later = at + chrono::Duration::microseconds(1);
        assert_ne!(
            base,
            entry_hash(1, GENESIS_HASH, later, "user.add", "d", "t", "f", &a)
        );
    }

    #[test]
    fn a_personal_digest_needs_its_salt_and_tells_null_from_text() {
        let d = personal_digest("00", Some("alice"));
        assert_eq!(d, personal_digest("00", Some("alice")));
        assert_ne!(d, personal_digest("01", Some("alice")));
        assert_ne!(d, personal_digest("00", Some("alicf")));
        assert_ne!(
            personal_digest("00", None),
            personal_digest("00", Some("null"))
        );
    }
}
