//! The database ceiling reads the database it is given, with business-logic's
//! own query: on SQLite and (when `TEST_DATABASE_URL` is set) PostgreSQL, its
//! answers equal what `business_logic::db::Database::item_by_sku` reads, and
//! its pages follow a change made to the rows behind its back.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use business_logic::db::Database;
use contract::FastAnswer;
use test_support::database::{Backend, TestDatabase};
use test_support::service::{Launch, Service};

async fn start(args: &[&str]) -> Service {
    let ceiling = Launch::program("ceiling", Path::new(env!("CARGO_BIN_EXE_ceiling")));
    let mut service = ceiling.args(args).start(Duration::from_secs(30)).unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    service
}

async fn reads_the_database(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let back = start(&["back", "--database-url", &db.url]).await;
    let front = start(&["front", "--backend-url", &back.url("")]).await;
    let reference = Database::connect_lazy(&db.url, 1).unwrap();
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let answer = client.get(back.url("/fast-endpoint")).send().await.unwrap();
        let answer: FastAnswer = answer.error_for_status().unwrap().json().await.unwrap();
        let stored = reference.item_by_sku(&answer.item.sku).await.unwrap();
        assert_eq!(Some(answer.item), stored);
    }
    // Rename every item behind the ceiling's back: it must show the new names.
    let rename = sqlx::raw_sql("UPDATE catalog_items SET name = 'renamed ' || sku");
    match backend {
        Backend::Sqlite => rename
            .execute(&sqlx::SqlitePool::connect(&db.url).await.unwrap())
            .await
            .map(drop),
        Backend::Postgres => rename
            .execute(&sqlx::PgPool::connect(&db.url).await.unwrap())
            .await
            .map(drop),
    }
    .unwrap();
    for _ in 0..5 {
        let page = client.get(front.url("/fast-page")).send().await.unwrap();
        let page = page.text().await.unwrap();
        assert!(page.contains("<h1>renamed SKU-"), "{page}");
    }
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
