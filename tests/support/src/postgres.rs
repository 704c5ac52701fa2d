//! A scratch Postgres database per test ([`ScratchPostgres`]) on the test server
//! (`CHITTI_TEST_POSTGRES_URL`, by default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped `WITH (FORCE)` on drop, also when the test panics.

use sqlx::Connection;

/// Admin URL for creating and dropping per-test databases.
pub fn postgres_admin_url() -> String {
    std::env::var("CHITTI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The admin URL with its database replaced by `name` (its query string kept).
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(base);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A fresh database on the test server, dropped on drop.
pub struct ScratchPostgres {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    admin: String,
}

impl ScratchPostgres {
    /// Creates `<prefix>_<random>` through [`postgres_admin_url`].
    pub async fn create(prefix: &str) -> Self {
        let admin = postgres_admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test postgres (set CHITTI_TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = database_url(&admin, &name);
        Self { url, name, admin }
    }

    /// The URL through another port (a proxy in front of the server).
    pub fn url_via(&self, port: u16) -> String {
        self.url.replace(":5432/", &format!(":{port}/"))
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself: use a
        // thread with a runtime of its own. WITH (FORCE) ends the pools' sessions.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
