//! The store's one error type.

use uuid::Uuid;

/// What can go wrong in the store. Messages are lowercase and never carry a connection
/// URL, a password or a password hash.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not one this hub understands (the URL itself is not echoed: it
    /// may carry a password).
    #[error("unsupported store url: expected sqlite:… or postgres://…")]
    UnsupportedUrl,
    /// The database could not be reached, or no connection became free in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying or reading the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A finding cannot be stored as it is; the whole batch was rejected.
    #[error("finding {id} cannot be stored: {reason}")]
    InvalidFinding {
        /// The finding.
        id: Uuid,
        /// Why.
        reason: &'static str,
    },
    /// A site, gateway, structure or asset id is not `[a-z0-9-]{1,64}`.
    #[error(transparent)]
    InvalidId(#[from] chitti_common::protocol::InvalidId),
    /// The gateway is already enrolled (revoked gateways keep their record).
    #[error("gateway {site}/{gateway} already exists")]
    GatewayExists {
        /// Site id.
        site: String,
        /// Gateway id.
        gateway: String,
    },
    /// A user with this username exists (disabled users keep their record).
    #[error("user {username} already exists")]
    UserExists {
        /// The username.
        username: String,
    },
    /// A site, structure, asset, session or API token with this key exists.
    #[error("{what} {id} already exists")]
    AlreadyExists {
        /// What it is ("site", "structure", "asset", "session", "api token").
        what: &'static str,
        /// Its key (`site/id` for structures and assets; never a token hash).
        id: String,
    },
    /// What a new row refers to does not exist (the site of a structure, the structure
    /// of an asset, the user of a session or token).
    #[error("{what} {id} not found")]
    NotFound {
        /// What is missing ("site", "structure", "user").
        what: &'static str,
        /// Its key.
        id: String,
    },
    /// Cannot delete: other rows still refer to it (a site's structures, assets or
    /// gateways; a structure's assets).
    #[error("{what} is in use")]
    InUse {
        /// What, with its key and what uses it, e.g. `site north-yard (structures)`.
        what: String,
    },
    /// A value the store refuses (a malformed hash, a scope with whitespace …).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A pagination cursor that this store did not hand out (or for another listing).
    #[error("invalid pagination cursor")]
    InvalidCursor,
    /// No alert with this id.
    #[error("alert {0} not found")]
    AlertNotFound(Uuid),
    /// A versioned document changed since the version an edit was based on.
    #[error(
        "{what} changed since the version this edit was based on: the current version is {current}"
    )]
    VersionConflict {
        /// Which document.
        what: &'static str,
        /// Its current version.
        current: i64,
    },
    /// The alert's status does not allow this action.
    #[error("cannot {action} an alert that is {status}")]
    InvalidTransition {
        /// The action attempted.
        action: &'static str,
        /// The alert's current status.
        status: &'static str,
    },
    /// The Postgres server answering is a standby in recovery (read-only): the URL, or
    /// the proxy in front of an HA cluster, does not lead to the primary (during a
    /// failover, until the proxy's health check moves).
    #[error("database is a read-only standby (in recovery), not the primary")]
    Standby,
    /// A stored value does not decode (a bug or a hand-edited database).
    #[error("corrupt stored {what}: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // Connection-level trouble: the caller may retry later (readiness fails).
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            other => Self::Database(other),
        }
    }
}

impl StoreError {
    /// True when the database could not be reached: retry later, do not dead-letter.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}
