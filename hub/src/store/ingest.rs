//! Findings and dead letters: what ingest writes and the API lists.
//!
//! A batch is stored in one write transaction: its rows (each engine's bulk insert, in
//! `sqlite` and `postgres`), then the alerts of its tracks, then its audit record when
//! it has one. Only newly inserted findings move alerts, so a resent batch never counts
//! twice.

use super::alerts::{cursor_time, push_contains, push_equal, TEXT_COLUMNS};
use super::rows::PreparedBatch;
use super::sql::{Row, Sql};
use super::*;
use chitti_common::finding::Finding;
use cursor::Listing;

/// Findings and dead letters.
pub trait IngestStore: Backed {
    /// Stores a batch of findings in one transaction, skipping ids already stored, and
    /// updates the alerts of their tracks. Durable when it returns `Ok`; on `Err`
    /// nothing of the batch is stored. A finding that cannot be stored (a NUL character
    /// in a text field, a non-finite hotspot temperature) rejects the batch with
    /// [`StoreError::InvalidFinding`].
    fn insert_findings(
        &self,
        findings: &[IngestedFinding],
    ) -> impl Future<Output = Result<InsertReport, StoreError>> + Send {
        insert_findings_with(self.db(), findings, None)
    }

    /// [`IngestStore::insert_findings`] and an audit record in the same transaction:
    /// the record exists exactly when the rows do (an upload cut off by a crash leaves
    /// no finding without its record).
    fn insert_findings_audited(
        &self,
        findings: &[IngestedFinding],
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<InsertReport, StoreError>> + Send {
        insert_findings_with(self.db(), findings, Some(audit))
    }

    /// One finding by id.
    fn finding(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredFinding>, StoreError>> + Send {
        async move {
            let sql =
                Sql::new("SELECT doc, received_at, batch_id FROM findings WHERE id = $1").bind(id);
            let row = self.db().fetch_optional(sql).await?;
            row.as_ref().map(stored_finding).transpose()
        }
    }

    /// How many findings are stored (exact; a full count on Postgres).
    fn count_findings(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let row = self
                .db()
                .fetch_one(Sql::new("SELECT count(*) AS n FROM findings"))
                .await?;
            row.count("n")
        }
    }

    /// A page of findings, newest received first: keyset pagination on
    /// (`received_at`, `id`) descending. The text filter is a parameterised `LIKE`
    /// (`ILIKE` on Postgres) over site, gateway, camera, asset and component class:
    /// case-insensitive for ASCII letters on SQLite, for all letters on Postgres.
    fn list_findings(
        &self,
        q: &FindingQuery,
    ) -> impl Future<Output = Result<Page<StoredFinding>, StoreError>> + Send {
        async move {
            let db = self.db();
            let limit = page_limit(q.limit);
            let mut sql =
                Sql::new("SELECT id, doc, received_at, batch_id FROM findings WHERE 1 = 1");
            push_equal(&mut sql, "site", q.site.as_deref());
            push_equal(&mut sql, "gateway", q.gateway.as_deref());
            push_equal(&mut sql, "camera", q.camera.as_deref());
            push_equal(&mut sql, "asset", q.asset.as_deref());
            if let Some(min) = q.min_level {
                sql.push(" AND severity_level >= ")
                    .push_bind(i16::from(min));
            }
            if let Some(since) = q.since {
                sql.push(" AND received_at >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                sql.push(" AND received_at < ").push_bind(until);
            }
            push_equal(&mut sql, "component_class", q.component_class.as_deref());
            if let Some(track) = q.track {
                sql.push(" AND track_id = ").push_bind(track);
            }
            if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
                push_contains(&mut sql, db.backend(), TEXT_COLUMNS, text);
            }
            if let Some(after) = &q.after {
                let (at, id) = after.key(Listing::Findings)?;
                sql.push(" AND (received_at, id) < (")
                    .push_bind(cursor_time(at)?)
                    .push(", ")
                    .push_bind(id)
                    .push(")");
            }
            sql.push(" ORDER BY received_at DESC, id DESC LIMIT ")
                .push_bind(limit as i64 + 1);
            let items = db
                .fetch_all(sql)
                .await?
                .iter()
                .map(stored_finding)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(into_page(items, limit, |f| {
                Cursor::new(Listing::Findings, f.received_at, f.finding.id)
            }))
        }
    }

    /// Keeps a message ingest could not use. NUL characters in the topic and reason
    /// (text columns) are replaced by U+FFFD; the payload is kept byte for byte.
    fn record_dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        async move {
            let gateway = letter.gateway();
            let sql = Sql::new(
                "INSERT INTO dead_letters (received_at, topic, reason, payload, class, site, gateway) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(letter.received_at)
            .bind(text_without_nul(&letter.topic))
            .bind(text_without_nul(&letter.reason))
            .bind(letter.payload.as_slice())
            .bind(text_without_nul(letter.class()))
            .bind(gateway.map(|g| text_without_nul(g.0).into_owned()))
            .bind(gateway.map(|g| text_without_nul(g.1).into_owned()));
            self.db().fetch_one(sql).await?.get("id")
        }
    }

    /// How many dead letters are kept.
    fn dead_letter_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let sql = Sql::new("SELECT count(*) AS n FROM dead_letters");
            self.db().fetch_one(sql).await?.count("n")
        }
    }

    /// The newest dead letters, newest first (at most [`MAX_PAGE_LIMIT`]).
    fn list_dead_letters(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetterRecord>, StoreError>> + Send {
        async move {
            let q = DeadLetterQuery {
                limit,
                ..DeadLetterQuery::default()
            };
            Ok(self.dead_letters(&q).await?.items)
        }
    }

    /// A page of dead letters, newest first: keyset pagination on (`received_at`,
    /// `id`) descending.
    fn dead_letters(
        &self,
        q: &DeadLetterQuery,
    ) -> impl Future<Output = Result<Page<DeadLetterRecord>, StoreError>> + Send {
        async move {
            let limit = page_limit(q.limit);
            let mut sql = Sql::new(format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE 1 = 1"
            ));
            push_dead_letter_filters(&mut sql, q);
            if let Some(after) = &q.after {
                let (at, id) = after.key(Listing::DeadLetters)?;
                sql.push(" AND (received_at, id) < (")
                    .push_bind(cursor_time(at)?)
                    .push(", ")
                    .push_bind(id.as_u64_pair().1 as i64)
                    .push(")");
            }
            sql.push(" ORDER BY received_at DESC, id DESC LIMIT ")
                .push_bind(limit as i64 + 1);
            let items = self
                .db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(dead_letter_from_row)
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(into_page(items, limit, |d| {
                Cursor::new(
                    Listing::DeadLetters,
                    d.letter.received_at,
                    Uuid::from_u64_pair(0, d.id as u64),
                )
            }))
        }
    }

    /// One dead letter by id.
    fn dead_letter(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<DeadLetterRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1"
            ))
            .bind(id);
            let row = self.db().fetch_optional(sql).await?;
            row.as_ref().map(dead_letter_from_row).transpose()
        }
    }

    /// The dead letters the filters of `q` select (its page and cursor aside),
    /// counted by (class, site, gateway), most first.
    fn dead_letter_groups(
        &self,
        q: &DeadLetterQuery,
    ) -> impl Future<Output = Result<Vec<DeadLetterGroup>, StoreError>> + Send {
        async move {
            let mut sql = Sql::new(
                "SELECT class, site, gateway, count(*) AS n, max(received_at) AS last_at \
                 FROM dead_letters WHERE 1 = 1",
            );
            push_dead_letter_filters(&mut sql, q);
            sql.push(
                " GROUP BY class, site, gateway \
                 ORDER BY n DESC, last_at DESC LIMIT ",
            )
            .push_bind(MAX_PAGE_LIMIT as i64);
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|row| {
                    Ok(DeadLetterGroup {
                        class: row.get("class")?,
                        site: row.get("site")?,
                        gateway: row.get("gateway")?,
                        count: row.count("n")?,
                        last_at: row.time("last_at")?,
                    })
                })
                .collect()
        }
    }
}

impl<T: Backed> IngestStore for T {}

/// The findings (and an audit record, when given) in one transaction.
async fn insert_findings_with(
    db: Db<'_>,
    findings: &[IngestedFinding],
    audit: Option<&AuditEvent>,
) -> Result<InsertReport, StoreError> {
    if findings.is_empty() {
        return Ok(InsertReport::default());
    }
    let batch = PreparedBatch::new(findings)?;
    let mut tx = db.begin_write().await?;
    let inserted = match &mut tx {
        Tx::Sqlite(conn) => sqlite::insert_finding_rows(conn, &batch.rows).await?,
        Tx::Postgres(conn) => postgres::insert_finding_rows(conn, &batch.rows).await?,
    };
    let deltas = batch.alert_deltas(&inserted);
    let alerts = match &mut tx {
        Tx::Sqlite(conn) => sqlite::merge_alerts(conn, &deltas).await?,
        Tx::Postgres(conn) => postgres::merge_alerts(conn, &deltas).await?,
    };
    // The upsert says which alerts reached a level never announced (in steady state,
    // none): only those cost the transition statements.
    let unannounced: Vec<Uuid> = alerts.iter().filter(|a| a.1).map(|a| a.0).collect();
    let alerts: Vec<Uuid> = alerts.into_iter().map(|a| a.0).collect();
    let received_at = findings.iter().map(|f| f.received_at).max();
    if let (Some(at), false) = (received_at, unannounced.is_empty()) {
        notifications::record_level_transitions(&mut tx, &unannounced, at).await?;
    }
    if let Some(event) = audit {
        super::audit::append(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(batch.report(&inserted, alerts))
}

fn stored_finding(row: &Row) -> Result<StoredFinding, StoreError> {
    Ok(StoredFinding {
        finding: row.json::<Finding>("doc", "finding")?,
        received_at: row.time("received_at")?,
        batch_id: row.get("batch_id")?,
    })
}

/// The `WHERE` filters of a [`DeadLetterQuery`] (one place for the list and the groups).
fn push_dead_letter_filters(sql: &mut Sql, q: &DeadLetterQuery) {
    push_equal(sql, "class", q.class.as_deref());
    push_equal(sql, "site", q.site.as_deref());
    push_equal(sql, "gateway", q.gateway.as_deref());
    if let Some(since) = q.since {
        sql.push(" AND received_at >= ").push_bind(since);
    }
    if let Some(until) = q.until {
        sql.push(" AND received_at < ").push_bind(until);
    }
}

/// The columns [`dead_letter_from_row`] reads.
const DEAD_LETTER_COLUMNS: &str = "id, received_at, topic, reason, payload, class, site, gateway";

fn dead_letter_from_row(row: &Row) -> Result<DeadLetterRecord, StoreError> {
    Ok(DeadLetterRecord {
        id: row.get("id")?,
        letter: DeadLetter {
            received_at: row.time("received_at")?,
            topic: row.get("topic")?,
            reason: row.get("reason")?,
            payload: row.get("payload")?,
        },
        class: row.get("class")?,
        site: row.get("site")?,
        gateway: row.get("gateway")?,
    })
}
