//! The evidence index (metadata of stored blobs, by SHA-256) and the audit log.
//!
//! Every state change other than an alert action (which has its own trail) belongs in
//! the audit log; the caller writes it, the store does not.

use super::sql::Sql;
use super::*;

/// Evidence blobs' metadata.
pub trait EvidenceIndex: Backed {
    /// Records an evidence blob's metadata, once: `true` when newly recorded, `false`
    /// when the hash was already known (the first record is kept). The hash must be
    /// lowercase hex SHA-256 ([`StoreError::InvalidInput`]).
    fn record_evidence(
        &self,
        e: &EvidenceRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            check_sha256("evidence sha256", &e.sha256)?;
            let sql = Sql::new(
                "INSERT INTO evidence (sha256, size_bytes, content_type, location, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(&e.sha256)
            .bind(evidence_size(e.size)?)
            .bind(text_without_nul(&e.content_type))
            .bind(&e.location)
            .bind(rows::to_micros(e.created_at));
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// One evidence blob's metadata.
    fn evidence(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<EvidenceRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT sha256, size_bytes, content_type, location, created_at FROM evidence \
                 WHERE sha256 = $1",
            )
            .bind(sha256);
            let row = self.db().fetch_optional(sql).await?;
            row.map(|row| {
                Ok(EvidenceRecord {
                    sha256: row.get("sha256")?,
                    size: row.count("size_bytes")?,
                    content_type: row.get("content_type")?,
                    location: row.get("location")?,
                    created_at: row.time("created_at")?,
                })
            })
            .transpose()
        }
    }
}

impl<T: Backed> EvidenceIndex for T {}

/// The audit log.
pub trait AuditLog: Backed {
    /// Appends to the audit log. NUL characters in text (and JSON strings) become
    /// U+FFFD, as for alert events.
    fn audit(&self, event: &AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            self.db().execute(audit_insert(event)).await?;
            Ok(())
        }
    }

    /// The newest audit records, newest (highest id) first (at most
    /// [`MAX_PAGE_LIMIT`]).
    fn list_audit(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT id, at, actor, action, target, from_address, detail FROM audit_log \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(page_limit(limit) as i64);
            let rows = self.db().fetch_all(sql).await?;
            rows.iter()
                .map(|row| {
                    Ok(AuditRecord {
                        id: row.get("id")?,
                        event: AuditEvent {
                            at: row.time("at")?,
                            actor: row.get("actor")?,
                            action: row.get("action")?,
                            target: row.get("target")?,
                            from_address: row.get("from_address")?,
                            detail: row.json("detail", "audit detail")?,
                        },
                    })
                })
                .collect()
        }
    }
}

impl<T: Backed> AuditLog for T {}

/// The statement that appends `event` (on a pool, or inside a transaction).
pub(crate) fn audit_insert(event: &AuditEvent) -> Sql {
    Sql::new(
        "INSERT INTO audit_log (at, actor, action, target, from_address, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(rows::to_micros(event.at))
    .bind(text_without_nul(&event.actor))
    .bind(text_without_nul(&event.action))
    .bind(text_without_nul(&event.target))
    .bind(event.from_address.as_deref().map(text_without_nul))
    .bind(sql::json_arg(Some(rows::json_without_nul(
        event.detail.to_string(),
    ))))
}
