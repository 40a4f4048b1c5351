//! Each HTTP worker runs its own event loop, and at shutdown a worker with
//! nothing in flight stops at once. Whatever a worker opened must not be
//! needed by another worker afterwards; these tests hold the database pool,
//! which all workers share, to that.

use std::time::Duration;

use business_logic::db::Database;
use test_support::database::{Backend, TestDatabase};

use crate::helpers::on_both_databases;

/// The pool's only connection is opened on an event loop that then goes
/// away, as a stopped worker's does; the next query, on another event loop,
/// still succeeds. SQLite connections run on threads of their own; a
/// PostgreSQL socket belongs to the event loop that opened it, and sqlx's
/// check before handing out a connection (`test_before_acquire`, kept on for
/// PostgreSQL) replaces one whose event loop is gone.
async fn a_connection_left_by_a_stopped_worker_does_not_fail_the_next_query(backend: Backend) {
    let Some(test_db) = TestDatabase::create(backend).await else {
        return;
    };
    let db = Database::connect_lazy(&test_db.url, 1).unwrap();
    let on_worker = db.clone();
    std::thread::spawn(move || {
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        worker.block_on(async {
            on_worker.migrate().await.unwrap();
            assert!(on_worker.item_by_sku("SKU-00001").await.unwrap().is_some());
            // A running worker's loop goes on, and puts the connection back
            // into the pool: sqlx does that in a task of the loop's own.
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        // The worker's event loop ends here, with everything it drove.
    })
    .join()
    .unwrap();

    let item = db.item_by_sku("SKU-00002").await;
    assert!(
        matches!(item, Ok(Some(_))),
        "a query after the worker stopped: {item:?}"
    );
    assert!(db.is_ready().await);
}

on_both_databases!(a_connection_left_by_a_stopped_worker_does_not_fail_the_next_query);
