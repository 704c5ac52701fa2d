//! Remote configuration: the desired documents saved for each gateway and the last
//! `/config/state` it reported (issue #19; DESIGN.md §9).
//!
//! # Invariants
//!
//! - **Versions only grow.** A gateway's desired versions are 1, 2, … with no gap and
//!   no reuse; a save names the version it edited and fails with
//!   [`StoreError::VersionConflict`] when another save came first (the gateway's row is
//!   locked for the save, so two saves never take the same number).
//! - **History is kept.** Every saved document stays, with who saved it and why.
//! - **A report replaces the last only when newer** (its own `ts`), so a retained state
//!   seen again, or a replay, changes nothing.

use super::sql::{json_arg, Row, Sql};
use super::*;
use chitti_common::protocol::{ConfigState, ConfigStatus};

/// One saved desired document.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRecord {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// 1, 2, … per gateway.
    pub version: i64,
    /// The agent's TOML.
    pub document: String,
    /// Who saved it.
    pub author: String,
    /// Why (free text, may be empty).
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The last `/config/state` a gateway reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedConfig {
    /// The report.
    pub state: ConfigState,
    /// When the hub received it.
    pub received_at: DateTime<Utc>,
}

/// One gateway's new desired document in a save.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChange {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// The version it was edited from (0: none yet).
    pub expected: i64,
    /// The agent's TOML.
    pub document: String,
}

/// A gateway that rejected its newest desired configuration, or rolled it back.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFailure {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// The newest desired version, the one that failed.
    pub version: i64,
    /// `rejected` or `rolled_back`.
    pub status: ConfigStatus,
    /// Why, as the gateway said.
    pub errors: Vec<String>,
    /// When the hub heard it.
    pub received_at: DateTime<Utc>,
}

const DESIRED_COLUMNS: &str = "site, gateway, version, document, author, reason, created_at";

fn desired_from_row(row: &Row) -> Result<DesiredRecord, StoreError> {
    Ok(DesiredRecord {
        site: row.get("site")?,
        gateway: row.get("gateway")?,
        version: row.get("version")?,
        document: row.get("document")?,
        author: row.get("author")?,
        reason: row.get("reason")?,
        created_at: row.time("created_at")?,
    })
}

/// Desired and reported configuration per gateway.
pub trait GatewayConfigStore: Backed {
    /// The newest desired documents of a gateway, newest first, at most `limit`.
    fn desired_configs(
        &self,
        site: &str,
        gateway: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DesiredRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {DESIRED_COLUMNS} FROM gateway_configs WHERE site = $1 AND gateway = $2 \
                 ORDER BY version DESC LIMIT $3"
            ))
            .bind(site)
            .bind(gateway)
            .bind(i64::from(limit));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(desired_from_row)
                .collect()
        }
    }

    /// The newest desired version of every gateway that has one, not revoked:
    /// `(site, gateway, version)`, what the publisher compares with what it sent.
    fn desired_versions(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, i64)>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT c.site, c.gateway, max(c.version) AS version FROM gateway_configs c \
                 JOIN gateways g ON g.site = c.site AND g.gateway = c.gateway \
                 WHERE g.revoked_at IS NULL GROUP BY c.site, c.gateway ORDER BY c.site, c.gateway",
            );
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|r| Ok((r.get("site")?, r.get("gateway")?, r.get("version")?)))
                .collect()
        }
    }

    /// One desired version of a gateway.
    fn desired_config(
        &self,
        site: &str,
        gateway: &str,
        version: i64,
    ) -> impl Future<Output = Result<Option<DesiredRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {DESIRED_COLUMNS} FROM gateway_configs \
                 WHERE site = $1 AND gateway = $2 AND version = $3"
            ))
            .bind(site)
            .bind(gateway)
            .bind(version);
            self.db()
                .fetch_optional(sql)
                .await?
                .as_ref()
                .map(desired_from_row)
                .transpose()
        }
    }

    /// Saves a new desired document for an enrolled, unrevoked gateway if its newest
    /// version is still `expected` (0: none yet), returning the new version; otherwise
    /// [`StoreError::VersionConflict`] naming the current one.
    #[allow(clippy::too_many_arguments)]
    fn save_desired_config(
        &self,
        site: &str,
        gateway: &str,
        expected: i64,
        document: &str,
        author: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        async move {
            let change = DesiredChange {
                site: site.to_string(),
                gateway: gateway.to_string(),
                expected,
                document: document.to_string(),
            };
            let saved = self
                .save_desired_configs(std::slice::from_ref(&change), author, reason, at)
                .await?;
            Ok(saved[0])
        }
    }

    /// Saves several gateways' new documents in one transaction, all or none (one
    /// change to a group): each gateway's newest version must still be its `expected`.
    /// The new versions, in order.
    fn save_desired_configs(
        &self,
        changes: &[DesiredChange],
        author: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let lock = tx.backend().for_update();
            let mut versions = Vec::with_capacity(changes.len());
            for c in changes {
                let enrolled = tx
                    .fetch_optional(
                        Sql::new(format!(
                            "SELECT gateway FROM gateways WHERE site = $1 AND gateway = $2 \
                             AND revoked_at IS NULL{lock}"
                        ))
                        .bind(c.site.as_str())
                        .bind(c.gateway.as_str()),
                    )
                    .await?;
                if enrolled.is_none() {
                    return Err(StoreError::NotFound {
                        what: "gateway",
                        id: format!("{}/{}", c.site, c.gateway),
                    });
                }
                let current: i64 = tx
                    .fetch_one(
                        Sql::new(
                            "SELECT coalesce(max(version), 0) AS version FROM gateway_configs \
                             WHERE site = $1 AND gateway = $2",
                        )
                        .bind(c.site.as_str())
                        .bind(c.gateway.as_str()),
                    )
                    .await?
                    .get("version")?;
                if current != c.expected {
                    return Err(StoreError::VersionConflict {
                        what: "gateway configuration",
                        current,
                    });
                }
                let next = current + 1;
                tx.execute(
                    Sql::new(format!(
                        "INSERT INTO gateway_configs ({DESIRED_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ))
                    .bind(c.site.as_str())
                    .bind(c.gateway.as_str())
                    .bind(next)
                    .bind(text_without_nul(&c.document))
                    .bind(text_without_nul(author))
                    .bind(text_without_nul(reason))
                    .bind(at),
                )
                .await?;
                versions.push(next);
            }
            tx.commit().await?;
            Ok(versions)
        }
    }

    /// Records a gateway's `/config/state` when it is newer than the last one kept;
    /// `false` when it is not (a retained report seen again, or a replay).
    fn apply_config_state(
        &self,
        site: &str,
        gateway: &str,
        state: &ConfigState,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let errors = serde_json::to_string(&state.errors)
                .map(rows::json_without_nul)
                .map_err(|e| StoreError::corrupt("configuration errors", e))?;
            let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let sql = Sql::new(
                "INSERT INTO gateway_config_states (site, gateway, version, status, errors, \
                 applied_version, applied_at, document, reported_at, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (site, gateway) DO UPDATE SET version = excluded.version, \
                 status = excluded.status, errors = excluded.errors, \
                 applied_version = excluded.applied_version, applied_at = excluded.applied_at, \
                 document = excluded.document, reported_at = excluded.reported_at, \
                 received_at = excluded.received_at \
                 WHERE excluded.reported_at > gateway_config_states.reported_at",
            )
            .bind(site)
            .bind(gateway)
            .bind(to_i64(state.version))
            .bind(state.status.as_str())
            .bind(json_arg(Some(errors)))
            .bind(state.applied_version.map(to_i64))
            .bind(state.applied_at)
            .bind(
                state
                    .config
                    .as_deref()
                    .map(|d| text_without_nul(d).into_owned()),
            )
            .bind(state.ts)
            .bind(received_at);
            Ok(self.db().execute(sql).await? == 1)
        }
    }

    /// Every gateway whose newest desired version it reported `rejected` or
    /// `rolled_back` (what the fleet watch raises `config_failed` for).
    fn config_failures(
        &self,
    ) -> impl Future<Output = Result<Vec<ConfigFailure>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT s.site, s.gateway, s.version, s.status, s.errors, s.received_at \
                 FROM gateway_config_states s JOIN (SELECT site, gateway, max(version) AS version \
                     FROM gateway_configs GROUP BY site, gateway) d \
                 ON d.site = s.site AND d.gateway = s.gateway AND d.version = s.version \
                 WHERE s.status IN ('rejected', 'rolled_back') ORDER BY s.site, s.gateway",
            );
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|row| {
                    let status: String = row.get("status")?;
                    Ok(ConfigFailure {
                        site: row.get("site")?,
                        gateway: row.get("gateway")?,
                        version: row.get("version")?,
                        status: ConfigStatus::parse(&status)
                            .ok_or_else(|| StoreError::corrupt("configuration status", status))?,
                        errors: row.json("errors", "configuration errors")?,
                        received_at: row.time("received_at")?,
                    })
                })
                .collect()
        }
    }

    /// The last `/config/state` a gateway reported.
    fn reported_config(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Option<ReportedConfig>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT version, status, errors, applied_version, applied_at, document, \
                 reported_at, received_at FROM gateway_config_states \
                 WHERE site = $1 AND gateway = $2",
            )
            .bind(site)
            .bind(gateway);
            let Some(row) = self.db().fetch_optional(sql).await? else {
                return Ok(None);
            };
            let status: String = row.get("status")?;
            let from_i64 = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(Some(ReportedConfig {
                state: ConfigState {
                    version: from_i64(row.get("version")?),
                    status: ConfigStatus::parse(&status)
                        .ok_or_else(|| StoreError::corrupt("configuration status", status))?,
                    errors: row.json("errors", "configuration errors")?,
                    applied_version: row.get::<Option<i64>>("applied_version")?.map(from_i64),
                    applied_at: row.opt_time("applied_at")?,
                    config: row.get("document")?,
                    ts: row.time("reported_at")?,
                },
                received_at: row.time("received_at")?,
            }))
        }
    }
}

impl<T: Backed> GatewayConfigStore for T {}
