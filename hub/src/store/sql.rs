//! The dialect layer: one SQL text and one set of arguments run on either engine.
//!
//! Every query of the store is written once, with `$1`-style placeholders (SQLite accepts
//! them too), against [`Db`] or [`Tx`]. The two real differences between the engines
//! live here and nowhere else:
//!
//! - **Type encodings.** A timestamp ([`Arg::Time`]) is integer microseconds on SQLite
//!   (so that values sort and compare) and `timestamptz` on Postgres; a JSON document
//!   ([`Arg::Json`]) is `TEXT` on SQLite and `jsonb` on Postgres. [`Row`] decodes them
//!   back the same way, so no statement casts.
//! - **Transactions.** A write transaction on SQLite starts with `BEGIN IMMEDIATE`: the
//!   writer takes the file lock up front and waits for it under the busy timeout, instead
//!   of failing with `SQLITE_BUSY` when a read transaction later needs to write.
//!
//! Statements whose *text* differs (bulk inserts through `UNNEST` against chunked
//! `VALUES`, `GREATEST` against two-argument `max`, catalogue queries) are chosen with
//! [`Db::backend`] next to each other in their domain's module.
//!
//! Why not sqlx's own `Any` driver: it encodes neither `chrono` nor `uuid` values, so it
//! would move every timestamp and id conversion into the queries. Why not a statement
//! builder (`sea-query`): the statements are fixed text with a handful of optional
//! filters, which [`Sql::push_bind`] covers in a few lines.

use super::rows::{from_micros, to_micros};
use super::{Backend, StoreError};
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{PgPool, Postgres, Row as _, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

/// A value bound to a placeholder. Each variant carries an `Option` so that a NULL keeps
/// its type (Postgres refuses a text NULL for a `timestamptz` column).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    F64(Option<f64>),
    Bool(Option<bool>),
    Uuid(Option<Uuid>),
    Bytes(Option<Vec<u8>>),
    /// A point in time, stored to the microsecond.
    Time(Option<DateTime<Utc>>),
    /// A serialised JSON document.
    Json(Option<String>),
}

/// Marks a string argument as a JSON document (`jsonb` on Postgres).
pub(crate) fn json_arg(doc: Option<String>) -> Arg {
    Arg::Json(doc)
}

macro_rules! arg_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<$t> for Arg {
                fn from(v: $t) -> Self {
                    Arg::$variant(Some(v.into()))
                }
            }
            impl From<Option<$t>> for Arg {
                fn from(v: Option<$t>) -> Self {
                    Arg::$variant(v.map(Into::into))
                }
            }
        )*
    };
}

arg_from! {
    String => Text,
    &str => Text,
    &String => Text,
    std::borrow::Cow<'_, str> => Text,
    i16 => I16,
    i32 => I32,
    i64 => I64,
    f64 => F64,
    bool => Bool,
    Uuid => Uuid,
    Vec<u8> => Bytes,
    &[u8] => Bytes,
    DateTime<Utc> => Time,
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

/// One statement and its arguments. Static text uses `$n` placeholders with
/// [`Sql::bind`]; dynamic text appends them with [`Sql::push_bind`].
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next numbered placeholder.
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn push_bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        let n = self.args.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    fn sqlite(&self) -> Query<'_, Sqlite, SqliteArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for arg in &self.args {
            q = match arg {
                Arg::Text(v) => q.bind(v.as_deref()),
                Arg::I16(v) => q.bind(*v),
                Arg::I32(v) => q.bind(*v),
                Arg::I64(v) => q.bind(*v),
                Arg::F64(v) => q.bind(*v),
                Arg::Bool(v) => q.bind(*v),
                Arg::Uuid(v) => q.bind(*v),
                Arg::Bytes(v) => q.bind(v.as_deref()),
                Arg::Time(v) => q.bind(v.map(|t| t.timestamp_micros())),
                Arg::Json(v) => q.bind(v.as_deref()),
            };
        }
        q
    }

    fn postgres(&self) -> Result<Query<'_, Postgres, PgArguments>, StoreError> {
        let mut q = sqlx::query(&self.text);
        for arg in &self.args {
            q = match arg {
                Arg::Text(v) => q.bind(v.as_deref()),
                Arg::I16(v) => q.bind(*v),
                Arg::I32(v) => q.bind(*v),
                Arg::I64(v) => q.bind(*v),
                Arg::F64(v) => q.bind(*v),
                Arg::Bool(v) => q.bind(*v),
                Arg::Uuid(v) => q.bind(*v),
                Arg::Bytes(v) => q.bind(v.as_deref()),
                Arg::Time(v) => q.bind(v.map(to_micros)),
                Arg::Json(v) => q.bind(match v {
                    Some(doc) => Some(sqlx::types::Json(
                        RawValue::from_string(doc.clone())
                            .map_err(|e| StoreError::corrupt("JSON document", e))?,
                    )),
                    None => None,
                }),
            };
        }
        Ok(q)
    }
}

/// A borrowed connection pool of either engine: what every shared query runs on.
#[derive(Debug, Clone, Copy)]
pub enum Db<'a> {
    /// SQLite.
    #[doc(hidden)]
    Sqlite(&'a SqlitePool),
    /// Postgres.
    #[doc(hidden)]
    Postgres(&'a PgPool),
}

impl<'a> Db<'a> {
    /// Which engine this is.
    pub fn backend(self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all(self, sql: Sql) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => sql
                .sqlite()
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Self::Postgres(p) => sql
                .postgres()?
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(self, sql: Sql) -> Result<Option<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => sql.sqlite().fetch_optional(p).await?.map(Row::Sqlite),
            Self::Postgres(p) => sql.postgres()?.fetch_optional(p).await?.map(Row::Postgres),
        })
    }

    /// Exactly one row.
    pub(crate) async fn fetch_one(self, sql: Sql) -> Result<Row, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => Row::Sqlite(sql.sqlite().fetch_one(p).await?),
            Self::Postgres(p) => Row::Postgres(sql.postgres()?.fetch_one(p).await?),
        })
    }

    /// Runs the statement; returns the number of rows it changed.
    pub(crate) async fn execute(self, sql: Sql) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => sql.sqlite().execute(p).await?.rows_affected(),
            Self::Postgres(p) => sql.postgres()?.execute(p).await?.rows_affected(),
        })
    }

    /// Begins a transaction that will write.
    pub(crate) async fn begin_write(self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }
}

/// An open transaction of either engine; dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Every row the statement returns.
    pub async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => sql
                .sqlite()
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Self::Postgres(tx) => {
                let q = sql.postgres()?;
                q.fetch_all(&mut **tx)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect()
            }
        })
    }

    /// The first row, if any.
    pub async fn fetch_optional(&mut self, sql: Sql) -> Result<Option<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => sql
                .sqlite()
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Sqlite),
            Self::Postgres(tx) => {
                let q = sql.postgres()?;
                q.fetch_optional(&mut **tx).await?.map(Row::Postgres)
            }
        })
    }

    /// Exactly one row.
    pub async fn fetch_one(&mut self, sql: Sql) -> Result<Row, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => Row::Sqlite(sql.sqlite().fetch_one(&mut **tx).await?),
            Self::Postgres(tx) => Row::Postgres(sql.postgres()?.fetch_one(&mut **tx).await?),
        })
    }

    /// Runs the statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => sql.sqlite().execute(&mut **tx).await?.rows_affected(),
            Self::Postgres(tx) => sql.postgres()?.execute(&mut **tx).await?.rows_affected(),
        })
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// A row of either engine, decoded by column name.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A Rust type both engines decode the same way.
pub(crate) trait Column:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Column for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}

impl Row {
    /// A column whose type both engines share (text, integers, floats, booleans, UUIDs,
    /// bytes, and `Option`s of them). Postgres checks the width: read an `int2` column as
    /// `i16`; SQLite reads any integer width.
    pub fn get<T: Column>(&self, column: &str) -> Result<T, StoreError> {
        Ok(match self {
            Self::Sqlite(r) => r.try_get(column)?,
            Self::Postgres(r) => r.try_get(column)?,
        })
    }

    /// A timestamp column.
    pub fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(column)?
            .ok_or_else(|| StoreError::corrupt("timestamp", format!("{column} is NULL")))
    }

    /// A nullable timestamp column.
    pub fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Self::Sqlite(r) => r
                .try_get::<Option<i64>, _>(column)?
                .map(|us| from_micros(us).ok_or_else(|| StoreError::corrupt("timestamp", us)))
                .transpose(),
            Self::Postgres(r) => Ok(r.try_get(column)?),
        }
    }

    /// A JSON column, parsed; `what` names it in a corruption error.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
        what: &'static str,
    ) -> Result<T, StoreError> {
        self.opt_json(column, what)?
            .ok_or_else(|| StoreError::corrupt(what, format!("{column} is NULL")))
    }

    /// A nullable JSON column, parsed.
    pub fn opt_json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let parse =
            |text: &str| serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e));
        match self {
            Self::Sqlite(r) => r.try_get::<Option<&str>, _>(column)?.map(parse).transpose(),
            Self::Postgres(r) => r
                .try_get::<Option<sqlx::types::Json<&RawValue>>, _>(column)?
                .map(|raw| parse(raw.0.get()))
                .transpose(),
        }
    }

    /// A non-negative count or size, stored signed.
    pub fn count(&self, column: &str) -> Result<u64, StoreError> {
        Ok(super::to_u64(self.get::<i64>(column)?))
    }
}

impl Tx {
    /// Which engine this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

// The few fragments of statement text that differ between the engines.
impl Backend {
    /// Appended to an `ORDER BY` of a text column: byte order on both engines (SQLite's
    /// default; on Postgres whatever the database's locale).
    pub(crate) fn bytewise(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " COLLATE \"C\"",
        }
    }

    /// Appended to a `SELECT` that locks its rows for the transaction (SQLite's write
    /// transaction already holds the database lock).
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// Appended to a `SELECT` whose rows one worker takes while others pass them by
    /// (claims of the notification outbox by several hub replicas).
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The case-insensitive `LIKE`: SQLite's `LIKE` folds ASCII letters, Postgres'
    /// `ILIKE` all letters.
    pub(crate) fn case_insensitive_like(self) -> &'static str {
        match self {
            Self::Sqlite => " LIKE ",
            Self::Postgres => " ILIKE ",
        }
    }
}
