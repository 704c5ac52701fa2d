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

impl Backed for AnyStore {
    fn db(&self) -> Db<'_> {
        match self {
            Self::Sqlite(s) => s.db(),
            Self::Postgres(s) => s.db(),
        }
    }
}
