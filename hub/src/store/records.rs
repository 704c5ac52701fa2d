//! The evidence index (metadata of stored blobs, by SHA-256).

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
