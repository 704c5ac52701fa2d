//! Users, login sessions and API tokens.
//!
//! Bearer tokens are kept only as their SHA-256. A lookup by hash refuses expired
//! sessions, revoked or expired tokens and disabled users in the very statement that
//! records the use (`last_seen_at`, `last_used_at`). The two engines do that lookup
//! differently, side by side below: Postgres in one `UPDATE … FROM users … RETURNING`;
//! SQLite (whose `RETURNING` cannot name a `FROM` table) reads first, so that unknown
//! tokens never take the write lock, then updates and reads the user in one write
//! transaction. Users are disabled, never deleted.

use super::sql::{Row, Sql};
use super::*;

const USER_COLUMNS: &str = "id, username, password_hash, role, created_at, disabled_at";
const SESSION_COLUMNS: &str =
    "id, user_id, csrf_token, created_at, expires_at, last_seen_at, from_address";
const API_TOKEN_COLUMNS: &str =
    "id, user_id, name, scopes, created_at, revoked_at, last_used_at, expires_at";

/// The user's columns in a Postgres `RETURNING` that also returns a session's or
/// token's, prefixed `u_`.
const USER_RETURNING: &str = "u.id AS u_id, u.username AS u_username, \
    u.password_hash AS u_password_hash, u.role AS u_role, u.created_at AS u_created_at, \
    u.disabled_at AS u_disabled_at";

/// Users, sessions and API tokens.
pub trait AccountStore: Backed {
    /// Creates a user (id and `created_at` assigned here). A taken username, disabled
    /// or not, is [`StoreError::UserExists`]; a username that is empty, longer than 64
    /// bytes or has whitespace or control characters is [`StoreError::InvalidInput`].
    fn add_user(
        &self,
        new: &NewUser,
    ) -> impl Future<Output = Result<UserRecord, StoreError>> + Send {
        async move {
            check_username(&new.username)?;
            let user = UserRecord {
                id: Uuid::now_v7(),
                username: new.username.clone(),
                password_hash: new.password_hash.clone(),
                role: new.role,
                created_at: rows::to_micros(Utc::now()),
                disabled_at: None,
            };
            let insert = Sql::new(
                "INSERT INTO users (id, username, password_hash, role, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.created_at);
            self.db().execute(insert).await.map_err(|e| {
                unique_error(e, || StoreError::UserExists {
                    username: new.username.clone(),
                })
            })?;
            Ok(user)
        }
    }

    /// One user by id.
    fn user(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).bind(id);
            let row = self.db().fetch_optional(sql).await?;
            row.map(|r| user_from_row(&r, "")).transpose()
        }
    }

    /// One user by username (exact, case-sensitive).
    fn user_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
            ))
            .bind(username);
            let row = self.db().fetch_optional(sql).await?;
            row.map(|r| user_from_row(&r, "")).transpose()
        }
    }

    /// Every user, disabled ones included, by username (byte order on both engines).
    fn list_users(&self) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send {
        async move {
            let db = self.db();
            let order = db.backend().bytewise();
            let sql = Sql::new(format!(
                "SELECT {USER_COLUMNS} FROM users ORDER BY username{order}"
            ));
            db.fetch_all(sql)
                .await?
                .iter()
                .map(|r| user_from_row(r, ""))
                .collect()
        }
    }

    /// Disables (sets `disabled_at`, keeping an earlier one) or re-enables a user.
    /// Disabling also deletes the user's sessions and revokes its API tokens, so
    /// re-enabling revives none of them. `false` when there is no such user.
    fn set_user_disabled(
        &self,
        id: Uuid,
        disabled: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let now = rows::to_micros(Utc::now());
            let mut tx = self.db().begin_write().await?;
            let done = tx
                .execute(
                    Sql::new(
                        "UPDATE users SET disabled_at = CASE WHEN $1 THEN coalesce(disabled_at, $2) \
                         END WHERE id = $3",
                    )
                    .bind(disabled)
                    .bind(now)
                    .bind(id),
                )
                .await?;
            if disabled {
                tx.execute(Sql::new("DELETE FROM sessions WHERE user_id = $1").bind(id))
                    .await?;
                // Revoked, not just refused: re-enabling the user revives none of them.
                tx.execute(
                    Sql::new(
                        "UPDATE api_tokens SET revoked_at = $1 \
                         WHERE user_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(id),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(done > 0)
        }
    }

    /// Changes a user's role. `false` when there is no such user.
    fn set_user_role(
        &self,
        id: Uuid,
        role: Role,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Stores a login session (id assigned here, `last_seen_at` = `created_at`). The
    /// token hash must be lowercase hex SHA-256 ([`StoreError::InvalidInput`]); an
    /// unknown user is [`StoreError::NotFound`].
    fn create_session(
        &self,
        new: &NewSession,
    ) -> impl Future<Output = Result<SessionRecord, StoreError>> + Send {
        async move {
            check_sha256("session token hash", &new.token_hash)?;
            let created_at = rows::to_micros(new.created_at);
            let session = SessionRecord {
                id: Uuid::now_v7(),
                user_id: new.user_id,
                csrf_token: new.csrf_token.clone(),
                created_at,
                expires_at: rows::to_micros(new.expires_at),
                last_seen_at: created_at,
                from_address: new
                    .from_address
                    .as_deref()
                    .map(|a| text_without_nul(a).into_owned()),
            };
            let insert = Sql::new(
                "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, \
                 expires_at, last_seen_at, from_address) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(session.id)
            .bind(&new.token_hash)
            .bind(session.user_id)
            .bind(&session.csrf_token)
            .bind(session.created_at)
            .bind(session.expires_at)
            .bind(session.last_seen_at)
            .bind(&session.from_address);
            self.db().execute(insert).await.map_err(|e| {
                constraint_error(
                    e,
                    || StoreError::AlreadyExists {
                        what: "session",
                        id: "with this token hash".into(),
                    },
                    || StoreError::NotFound {
                        what: "user",
                        id: new.user_id.to_string(),
                    },
                )
            })?;
            Ok(session)
        }
    }

    /// The session a token hash names and its user, moving `last_seen_at` up to `now`.
    /// `None` when there is none, it has expired (`expires_at <= now`) or the user is
    /// disabled.
    fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(SessionRecord, UserRecord)>, StoreError>> + Send {
        async move {
            let lookup = BearerLookup {
                postgres: format!(
                    "UPDATE sessions s SET last_seen_at = GREATEST(s.last_seen_at, $2) \
                     FROM users u WHERE s.token_hash = $1 AND s.expires_at > $2 \
                     AND u.id = s.user_id AND u.disabled_at IS NULL \
                     RETURNING s.id, s.user_id, s.csrf_token, s.created_at, s.expires_at, \
                     s.last_seen_at, s.from_address, {USER_RETURNING}"
                ),
                sqlite_known: "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
                sqlite_touch: format!(
                    "UPDATE sessions SET last_seen_at = max(last_seen_at, $2) \
                     WHERE token_hash = $1 AND expires_at > $2 \
                     AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
                     RETURNING {SESSION_COLUMNS}"
                ),
            };
            lookup
                .run(self.db(), token_hash, now, session_from_row, |s| s.user_id)
                .await
        }
    }

    /// Ends a session (logout). `false` when there was none.
    fn delete_session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Deletes every session with `expires_at <= now`; returns how many.
    fn delete_expired_sessions(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let sql = Sql::new("DELETE FROM sessions WHERE expires_at <= $1").bind(now);
            self.db().execute(sql).await
        }
    }

    /// Stores an API token (id and `created_at` assigned here). The hash must be
    /// lowercase hex SHA-256 and each scope non-empty without whitespace
    /// ([`StoreError::InvalidInput`]); an unknown user is [`StoreError::NotFound`].
    fn create_api_token(
        &self,
        new: &NewApiToken,
    ) -> impl Future<Output = Result<ApiTokenRecord, StoreError>> + Send {
        async move {
            check_sha256("api token hash", &new.token_hash)?;
            let scopes = join_scopes(&new.scopes)?;
            let token = ApiTokenRecord {
                id: Uuid::now_v7(),
                user_id: new.user_id,
                name: text_without_nul(&new.name).into_owned(),
                scopes: new.scopes.clone(),
                created_at: rows::to_micros(Utc::now()),
                revoked_at: None,
                last_used_at: None,
                expires_at: new.expires_at.map(rows::to_micros),
            };
            let insert = Sql::new(
                "INSERT INTO api_tokens (id, token_hash, user_id, name, scopes, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(token.id)
            .bind(&new.token_hash)
            .bind(token.user_id)
            .bind(&token.name)
            .bind(scopes)
            .bind(token.created_at)
            .bind(token.expires_at);
            self.db().execute(insert).await.map_err(|e| {
                constraint_error(
                    e,
                    || StoreError::AlreadyExists {
                        what: "api token",
                        id: "with this hash".into(),
                    },
                    || StoreError::NotFound {
                        what: "user",
                        id: new.user_id.to_string(),
                    },
                )
            })?;
            Ok(token)
        }
    }

    /// The token a hash names and its user, setting `last_used_at` to `now` (the
    /// hub's clock). `None` when there is none, it is revoked, it expired by `now`, or
    /// the user is disabled.
    fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(ApiTokenRecord, UserRecord)>, StoreError>> + Send {
        async move {
            let lookup = BearerLookup {
                postgres: format!(
                    "UPDATE api_tokens t SET last_used_at = GREATEST(t.last_used_at, $2) \
                     FROM users u WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
                     AND (t.expires_at IS NULL OR t.expires_at > $2) \
                     AND u.id = t.user_id AND u.disabled_at IS NULL \
                     RETURNING t.id, t.user_id, t.name, t.scopes, t.created_at, \
                     t.revoked_at, t.last_used_at, t.expires_at, {USER_RETURNING}"
                ),
                sqlite_known:
                    "SELECT t.user_id FROM api_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL \
                     AND (t.expires_at IS NULL OR t.expires_at > $2)",
                sqlite_touch: format!(
                    "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, $2), $2) \
                     WHERE token_hash = $1 AND revoked_at IS NULL \
                     AND (expires_at IS NULL OR expires_at > $2) \
                     AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
                     RETURNING {API_TOKEN_COLUMNS}"
                ),
            };
            lookup
                .run(self.db(), token_hash, now, api_token_from_row, |t| {
                    t.user_id
                })
                .await
        }
    }

    /// A user's tokens, revoked ones included, oldest first.
    fn list_api_tokens(
        &self,
        user_id: Uuid,
    ) -> impl Future<Output = Result<Vec<ApiTokenRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 \
                 ORDER BY created_at, id"
            ))
            .bind(user_id);
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(api_token_from_row)
                .collect()
        }
    }

    /// Revokes a token (sets `revoked_at`, keeps the record). `false` when there is no
    /// such token or it was already revoked.
    fn revoke_api_token(&self, id: Uuid) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(rows::to_micros(Utc::now()))
            .bind(id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Sets a user's password hash and ends the user's sessions, all but `keep` (the
    /// one that changed it). `false` when there is no such user.
    fn set_password(
        &self,
        id: Uuid,
        password_hash: &str,
        keep: Option<Uuid>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let done = tx
                .execute(
                    Sql::new("UPDATE users SET password_hash = $1 WHERE id = $2")
                        .bind(password_hash)
                        .bind(id),
                )
                .await?;
            let mut end = Sql::new("DELETE FROM sessions WHERE user_id = $1").bind(id);
            if let Some(keep) = keep {
                end = Sql::new("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                    .bind(id)
                    .bind(keep);
            }
            tx.execute(end).await?;
            tx.commit().await?;
            Ok(done > 0)
        }
    }

    /// A user's sessions that have not expired at `now`, newest first.
    fn user_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<SessionRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND expires_at > $2 \
                 ORDER BY created_at DESC, id DESC"
            ))
            .bind(user_id)
            .bind(rows::to_micros(now));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(session_from_row)
                .collect()
        }
    }

    /// Ends one of a user's sessions (`Some`) or all of them (`None`); returns how many.
    fn end_user_sessions(
        &self,
        user_id: Uuid,
        session: Option<Uuid>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let sql = match session {
                Some(s) => Sql::new("DELETE FROM sessions WHERE user_id = $1 AND id = $2")
                    .bind(user_id)
                    .bind(s),
                None => Sql::new("DELETE FROM sessions WHERE user_id = $1").bind(user_id),
            };
            self.db().execute(sql).await
        }
    }

    /// Records a one-time password reset link (by its token's SHA-256).
    fn create_password_reset(
        &self,
        token_hash: &str,
        user_id: Uuid,
        created_by: &str,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            check_sha256("reset token hash", token_hash)?;
            let sql = Sql::new(
                "INSERT INTO password_resets (token_hash, user_id, created_by, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(text_without_nul(created_by))
            .bind(rows::to_micros(created_at))
            .bind(rows::to_micros(expires_at));
            self.db().execute(sql).await?;
            Ok(())
        }
    }

    /// Uses a reset link: when it exists, is unused and unexpired at `now`, and its
    /// user is not disabled, marks it used, sets the password hash and ends every
    /// session of the user, in one transaction; the user. `None` otherwise (and nothing
    /// changes).
    fn use_password_reset(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        password_hash: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send {
        async move {
            let now = rows::to_micros(now);
            let mut tx = self.db().begin_write().await?;
            let claimed = tx
                .fetch_optional(
                    Sql::new(
                        "UPDATE password_resets SET used_at = $1 WHERE token_hash = $2 \
                         AND used_at IS NULL AND expires_at > $1 \
                         AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
                         RETURNING user_id",
                    )
                    .bind(now)
                    .bind(token_hash),
                )
                .await?;
            let Some(claimed) = claimed else {
                return Ok(None);
            };
            let user_id: Uuid = claimed.get("user_id")?;
            tx.execute(
                Sql::new("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(user_id),
            )
            .await?;
            tx.execute(Sql::new("DELETE FROM sessions WHERE user_id = $1").bind(user_id))
                .await?;
            // Other links of the same user die with this one.
            tx.execute(
                Sql::new(
                    "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 \
                     AND used_at IS NULL",
                )
                .bind(now)
                .bind(user_id),
            )
            .await?;
            let user = user_in(&mut tx, user_id).await?;
            tx.commit().await?;
            Ok(Some(user))
        }
    }
}

impl<T: Backed> AccountStore for T {}

/// How one kind of bearer credential is found by its hash and its use recorded, on each
/// engine (see the module header). Every statement binds `$1` = the token hash and
/// `$2` = now.
struct BearerLookup {
    /// Postgres: the checks and the update in one statement, returning the record and
    /// the user's columns prefixed `u_`.
    postgres: String,
    /// SQLite: the read that keeps unknown and refused tokens off the write lock.
    sqlite_known: &'static str,
    /// SQLite: the update, with the same conditions again (the user may have been
    /// disabled since the read), returning the record.
    sqlite_touch: String,
}

impl BearerLookup {
    async fn run<R>(
        self,
        db: Db<'_>,
        token_hash: &str,
        now: DateTime<Utc>,
        parse: fn(&Row) -> Result<R, StoreError>,
        user_id: fn(&R) -> Uuid,
    ) -> Result<Option<(R, UserRecord)>, StoreError> {
        let now = rows::to_micros(now);
        let statement = |text: String| Sql::new(text).bind(token_hash).bind(now);
        match db.backend() {
            Backend::Postgres => {
                let row = db.fetch_optional(statement(self.postgres)).await?;
                row.map(|row| Ok((parse(&row)?, user_from_row(&row, "u_")?)))
                    .transpose()
            }
            Backend::Sqlite => {
                let known = statement(self.sqlite_known.to_string());
                if db.fetch_optional(known).await?.is_none() {
                    return Ok(None);
                }
                let mut tx = db.begin_write().await?;
                let Some(row) = tx.fetch_optional(statement(self.sqlite_touch)).await? else {
                    return Ok(None);
                };
                let record = parse(&row)?;
                let user = user_in(&mut tx, user_id(&record)).await?;
                tx.commit().await?;
                Ok(Some((record, user)))
            }
        }
    }
}

/// A user read inside a transaction (it exists: a foreign key names it).
async fn user_in(tx: &mut Tx, id: Uuid) -> Result<UserRecord, StoreError> {
    let sql = Sql::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).bind(id);
    user_from_row(&tx.fetch_one(sql).await?, "")
}

/// A user from a row, its columns named with `prefix` (see [`USER_RETURNING`]).
fn user_from_row(row: &Row, prefix: &str) -> Result<UserRecord, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    Ok(UserRecord {
        id: row.get(&col("id"))?,
        username: row.get(&col("username"))?,
        password_hash: row.get(&col("password_hash"))?,
        role: Role::parse_stored(&row.get::<String>(&col("role"))?)?,
        created_at: row.time(&col("created_at"))?,
        disabled_at: row.opt_time(&col("disabled_at"))?,
    })
}

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        csrf_token: row.get("csrf_token")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        last_seen_at: row.time("last_seen_at")?,
        from_address: row.get("from_address")?,
    })
}

fn api_token_from_row(row: &Row) -> Result<ApiTokenRecord, StoreError> {
    Ok(ApiTokenRecord {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        name: row.get("name")?,
        scopes: split_scopes(&row.get::<String>("scopes")?),
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        last_used_at: row.opt_time("last_used_at")?,
        expires_at: row.opt_time("expires_at")?,
    })
}
