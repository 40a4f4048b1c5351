//! The database ceiling reads the database it is given, live, on SQLite and
//! (when `TEST_DATABASE_URL` is set) PostgreSQL: its pages show the seeded
//! items, then follow a change made to the rows behind its back.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use test_support::database::{Backend, TestDatabase};
use test_support::service::{Launch, Service};

async fn start(args: &[&str]) -> Service {
    let ceiling = Launch::program("ceiling", Path::new(env!("CARGO_BIN_EXE_ceiling")));
    let mut service = ceiling.args(args).start(Duration::from_secs(30)).unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    service
}

/// Five fast pages of the ceiling front at `url`, each showing `heading`.
async fn pages_show(url: &str, heading: &str) {
    for _ in 0..5 {
        let page = reqwest::get(url).await.unwrap().text().await.unwrap();
        assert!(page.contains(heading), "{heading:?} not on {page}");
    }
}

async fn reads_the_database(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let back = start(&["back", "--database-url", &db.url]).await;
    let front = start(&["front", "--backend-url", &back.url("")]).await;
    let page = front.url("/fast-page");
    pages_show(&page, "<h1>Item ").await;
    let rename = sqlx::raw_sql("UPDATE catalog_items SET name = 'renamed ' || sku");
    let renamed = match backend {
        Backend::Sqlite => rename
            .execute(&sqlx::SqlitePool::connect(&db.url).await.unwrap())
            .await
            .map(drop),
        Backend::Postgres => rename
            .execute(&sqlx::PgPool::connect(&db.url).await.unwrap())
            .await
            .map(drop),
    };
    renamed.unwrap();
    pages_show(&page, "<h1>renamed SKU-").await;
}

#[tokio::test]
async fn database_ceiling_reads_sqlite() {
    reads_the_database(Backend::Sqlite).await;
}

/// Tests that need PostgreSQL (`make test-rust` skips this marker when
/// TEST_DATABASE_URL is unset).
mod needs_postgres {
    #[tokio::test]
    async fn database_ceiling_reads_postgres() {
        super::reads_the_database(super::Backend::Postgres).await;
    }
}
