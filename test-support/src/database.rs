//! Throw-away databases: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database on the server named by `TEST_DATABASE_URL`.

use std::path::PathBuf;

use sqlx::Connection;

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// What to give the service as `DATABASE_URL`.
    pub url: String,
    dir: Option<PathBuf>,
    admin: Option<(String, String)>,
}

impl TestDatabase {
    /// Creates one; `None` for PostgreSQL when `TEST_DATABASE_URL` is unset
    /// outside CI (in CI that is a failure).
    pub async fn create(backend: Backend) -> Option<Self> {
        let tag = format!("{:016x}", fastrand::u64(..));
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("demo-test-{tag}"));
                std::fs::create_dir_all(&dir).unwrap();
                Some(Self {
                    url: format!("sqlite://{}/business-logic.db", dir.display()),
                    dir: Some(dir),
                    admin: None,
                })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    assert!(!crate::in_ci(), "TEST_DATABASE_URL must be set in CI");
                    eprintln!("TEST_DATABASE_URL unset: PostgreSQL variant not run");
                    return None;
                };
                Some(
                    Self::create_postgres(&admin_url)
                        .await
                        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: {e:#}")),
                )
            }
        }
    }

    /// A fresh database on the PostgreSQL server `admin_url` points at
    /// (dropped with the value); an error, not a panic, when the server
    /// does not answer within 5 s or refuses: the bench skips PostgreSQL then.
    pub async fn create_postgres(admin_url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let name = format!("demo_test_{:016x}", fastrand::u64(..));
        let mut conn = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sqlx::PgConnection::connect(admin_url),
        )
        .await
        .context("no answer within 5 s")?
        .context("connecting")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        Ok(Self {
            url: format!("{base}/{name}"),
            dir: None,
            admin: Some((admin_url.to_owned(), name)),
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin_url, name)) = self.admin.take() {
            // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}
