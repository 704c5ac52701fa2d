//! [`AnyStore`]: the backend a URL names, behind one type.

use super::*;

/// The hub's store, chosen at start-up from its URL.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// SQLite (the embedded default).
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl AnyStore {
    /// Connects with [`StoreOptions::default`]: `sqlite://path?mode=rwc`, `sqlite:path`,
    /// `sqlite::memory:` or `postgres://…` (`postgresql://…`). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects with the given options.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url, options).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(url, options).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// Forwards a trait method to whichever backend this is.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call.await,
            AnyStore::Postgres($s) => $call.await,
        }
    };
}

impl Store for AnyStore {
    fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(s) => s.backend(),
            Self::Postgres(s) => s.backend(),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.ping())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.migrate())
    }

    async fn migration_status(&self) -> Result<Vec<MigrationInfo>, StoreError> {
        delegate!(self, s => s.migration_status())
    }

    async fn insert_findings(
        &self,
        findings: &[IngestedFinding],
    ) -> Result<InsertReport, StoreError> {
        delegate!(self, s => s.insert_findings(findings))
    }

    async fn insert_findings_audited(
        &self,
        findings: &[IngestedFinding],
        audit: &AuditEvent,
    ) -> Result<InsertReport, StoreError> {
        delegate!(self, s => s.insert_findings_audited(findings, audit))
    }

    async fn finding(&self, id: Uuid) -> Result<Option<StoredFinding>, StoreError> {
        delegate!(self, s => s.finding(id))
    }

    async fn count_findings(&self) -> Result<u64, StoreError> {
        delegate!(self, s => s.count_findings())
    }

    async fn list_findings(&self, query: &FindingQuery) -> Result<Page<StoredFinding>, StoreError> {
        delegate!(self, s => s.list_findings(query))
    }

    async fn alert(&self, id: Uuid) -> Result<Option<AlertRecord>, StoreError> {
        delegate!(self, s => s.alert(id))
    }

    async fn list_alerts(&self, query: &AlertQuery) -> Result<Page<AlertRecord>, StoreError> {
        delegate!(self, s => s.list_alerts(query))
    }

    async fn record_alert_event(&self, event: &NewAlertEvent) -> Result<AlertRecord, StoreError> {
        delegate!(self, s => s.record_alert_event(event))
    }

    async fn alert_events(&self, alert_id: Uuid) -> Result<Vec<AlertEvent>, StoreError> {
        delegate!(self, s => s.alert_events(alert_id))
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<i64, StoreError> {
        delegate!(self, s => s.record_dead_letter(letter))
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        delegate!(self, s => s.dead_letter_count())
    }

    async fn list_dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterRecord>, StoreError> {
        delegate!(self, s => s.list_dead_letters(limit))
    }

    async fn add_gateway(&self, gateway: &NewGateway) -> Result<GatewayRecord, StoreError> {
        delegate!(self, s => s.add_gateway(gateway))
    }

    async fn list_gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        delegate!(self, s => s.list_gateways())
    }

    async fn gateway(
        &self,
        site: &str,
        gateway: &str,
    ) -> Result<Option<GatewayRecord>, StoreError> {
        delegate!(self, s => s.gateway(site, gateway))
    }

    async fn gateway_by_username(
        &self,
        username: &str,
    ) -> Result<Option<GatewayRecord>, StoreError> {
        delegate!(self, s => s.gateway_by_username(username))
    }

    async fn revoke_gateway(&self, site: &str, gateway: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.revoke_gateway(site, gateway))
    }

    async fn update_gateway_status(
        &self,
        site: &str,
        gateway: &str,
        status: &AgentStatus,
        received_at: DateTime<Utc>,
    ) -> Result<StatusOutcome, StoreError> {
        delegate!(self, s => s.update_gateway_status(site, gateway, status, received_at))
    }

    async fn list_cameras(
        &self,
        site: &str,
        gateway: &str,
    ) -> Result<Vec<CameraRecord>, StoreError> {
        delegate!(self, s => s.list_cameras(site, gateway))
    }

    async fn insert_telemetry(
        &self,
        site: &str,
        gateway: &str,
        telemetry: &Telemetry,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.insert_telemetry(site, gateway, telemetry))
    }

    async fn telemetry(
        &self,
        site: &str,
        gateway: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<TelemetryMinute>, StoreError> {
        delegate!(self, s => s.telemetry(site, gateway, since, until))
    }

    async fn add_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        delegate!(self, s => s.add_user(user))
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        delegate!(self, s => s.user(id))
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        delegate!(self, s => s.user_by_username(username))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        delegate!(self, s => s.list_users())
    }

    async fn set_user_disabled(&self, id: Uuid, disabled: bool) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_user_disabled(id, disabled))
    }

    async fn set_user_role(&self, id: Uuid, role: Role) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_user_role(id, role))
    }

    async fn create_session(&self, session: &NewSession) -> Result<SessionRecord, StoreError> {
        delegate!(self, s => s.create_session(session))
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        delegate!(self, s => s.session_by_token_hash(token_hash, now))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_session(token_hash))
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        delegate!(self, s => s.delete_expired_sessions(now))
    }

    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiTokenRecord, StoreError> {
        delegate!(self, s => s.create_api_token(token))
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        delegate!(self, s => s.api_token_by_hash(token_hash, now))
    }

    async fn list_api_tokens(&self, user_id: Uuid) -> Result<Vec<ApiTokenRecord>, StoreError> {
        delegate!(self, s => s.list_api_tokens(user_id))
    }

    async fn revoke_api_token(&self, id: Uuid) -> Result<bool, StoreError> {
        delegate!(self, s => s.revoke_api_token(id))
    }

    async fn add_site(&self, site: &NewSite) -> Result<SiteRecord, StoreError> {
        delegate!(self, s => s.add_site(site))
    }

    async fn list_sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        delegate!(self, s => s.list_sites())
    }

    async fn site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError> {
        delegate!(self, s => s.site(id))
    }

    async fn update_site(&self, site: &NewSite) -> Result<bool, StoreError> {
        delegate!(self, s => s.update_site(site))
    }

    async fn delete_site(&self, id: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_site(id))
    }

    async fn add_structure(&self, structure: &NewStructure) -> Result<StructureRecord, StoreError> {
        delegate!(self, s => s.add_structure(structure))
    }

    async fn list_structures(&self, site: &str) -> Result<Vec<StructureRecord>, StoreError> {
        delegate!(self, s => s.list_structures(site))
    }

    async fn structure(&self, site: &str, id: &str) -> Result<Option<StructureRecord>, StoreError> {
        delegate!(self, s => s.structure(site, id))
    }

    async fn update_structure(&self, structure: &NewStructure) -> Result<bool, StoreError> {
        delegate!(self, s => s.update_structure(structure))
    }

    async fn delete_structure(&self, site: &str, id: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_structure(site, id))
    }

    async fn add_asset(&self, asset: &NewAsset) -> Result<AssetRecord, StoreError> {
        delegate!(self, s => s.add_asset(asset))
    }

    async fn list_assets(&self, site: Option<&str>) -> Result<Vec<AssetRecord>, StoreError> {
        delegate!(self, s => s.list_assets(site))
    }

    async fn asset(&self, site: &str, id: &str) -> Result<Option<AssetRecord>, StoreError> {
        delegate!(self, s => s.asset(site, id))
    }

    async fn update_asset(&self, asset: &NewAsset) -> Result<bool, StoreError> {
        delegate!(self, s => s.update_asset(asset))
    }

    async fn delete_asset(&self, site: &str, id: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_asset(site, id))
    }

    async fn record_evidence(&self, evidence: &EvidenceRecord) -> Result<bool, StoreError> {
        delegate!(self, s => s.record_evidence(evidence))
    }

    async fn evidence(&self, sha256: &str) -> Result<Option<EvidenceRecord>, StoreError> {
        delegate!(self, s => s.evidence(sha256))
    }

    async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        delegate!(self, s => s.audit(event))
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        delegate!(self, s => s.list_audit(limit))
    }
}
