//! Storage: one small repository type over SQLite or PostgreSQL, chosen at
//! run time from `DATABASE_URL`. Every query runs in a client span and its
//! duration goes into the histogram [`QUERY_DURATION`], labelled by [`Query`].

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contract::Item;
use contract::metrics::{DB_QUERY_DURATION_SECONDS, QUERY};
use service_kit::{Histogram, HistogramSpec, redact};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use tracing::Instrument;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before it gets a 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The span name of the canary regression's extra lookup
/// ([`Database::count_items_named_like`]), as Jaeger lists it.
pub const EXTRA_QUERY_SPAN: &str = "SELECT catalog_items name LIKE (unindexed scan)";

/// `db_query_duration_seconds`: how long each [`Query`] took, from the
/// request's point of view (waiting for a pooled connection included), from
/// a few microseconds (an indexed read on SQLite) to a second (anything
/// slower is in `+Inf`, and in trouble).
pub const QUERY_DURATION: HistogramSpec = HistogramSpec {
    name: DB_QUERY_DURATION_SECONDS,
    help: "Database query duration in seconds, per query",
    labels: &[QUERY],
    buckets: &[
        0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ],
};

/// The repository's queries, as [`QUERY_DURATION`]'s `query` label names
/// them: one name per method, never the SQL text, so the label's values are
/// these and no others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// [`Database::item_by_sku`], the fast endpoint's.
    ItemBySku,
    /// [`Database::stock_by_category`], the slow endpoint's.
    StockByCategory,
    /// [`Database::count_items_named_like`], the canary regression's.
    ItemsNamedLike,
}

impl Query {
    /// The value of the `query` label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::ItemBySku => "item_by_sku",
            Self::StockByCategory => "stock_by_category",
            Self::ItemsNamedLike => "items_named_like",
        }
    }
}

/// Stock figures of one category, aggregated by the database.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CategoryStock {
    pub category: String,
    pub items: i64,
    pub units_in_stock: i64,
    pub inventory_value_cents: i64,
    pub price_total_cents: i64,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement on whichever pool is configured.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// The database: a lazily connected pool, whether migrations have run, and
/// where query durations go.
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    migrated: Arc<AtomicBool>,
    query_durations: Histogram,
}

impl Database {
    /// Creates the pool on `url` (`DATABASE_URL`) with at most
    /// `max_connections` (`DATABASE_MAX_CONNECTIONS`), without connecting:
    /// the service starts (and answers `/healthz`) even while the database
    /// is still coming up.
    pub fn connect_lazy(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let invalid =
            |e: sqlx::Error| anyhow::anyhow!("DATABASE_URL={:?} is not valid: {e}", redact(url));
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(invalid)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5));
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    // sqlx pings a connection before handing it out; for
                    // SQLite that is one more round trip to the thread the
                    // connection runs on, per query. An in-process file
                    // cannot drop the connection, so skip it.
                    .test_before_acquire(false)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        } else {
            let options = PgConnectOptions::from_str(url).map_err(invalid)?;
            Pool::Postgres(
                // sqlx's ping before handing out a connection stays on: a
                // PostgreSQL socket belongs to the event loop of the worker
                // that opened it, and one left by a worker that stopped at
                // shutdown fails ("being shutdown"); the ping replaces it
                // (tests/api/workers.rs).
                PgPoolOptions::new()
                    .test_before_acquire(true)
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        };
        Ok(Self {
            pool,
            migrated: Arc::default(),
            query_durations: Histogram::default(),
        })
    }

    /// Records each query's duration in `histogram`, made from
    /// [`QUERY_DURATION`] (without it, durations are not recorded).
    pub fn with_query_durations(mut self, histogram: Histogram) -> Self {
        self.query_durations = histogram;
        self
    }

    /// `sqlite` or `postgresql`, as OpenTelemetry's `db.system.name` spells them.
    pub fn system(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgresql",
        }
    }

    /// Applies the embedded migrations (which also seed the catalog).
    /// PostgreSQL's migrator holds an advisory lock, so replicas starting
    /// together apply them once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match &self.pool {
            Pool::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await,
            Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
        }?;
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Migrates, retrying with exponential backoff (100 ms doubling up to
    /// 5 s) until the database answers. Runs in the background at start-up.
    pub async fn migrate_with_retry(&self) {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1u32;
        loop {
            match self.migrate().await {
                Ok(()) => {
                    tracing::info!(
                        db.system.name = self.system(),
                        attempt,
                        "database ready: migrations applied"
                    );
                    return;
                }
                Err(error) => {
                    tracing::warn!(
                        db.system.name = self.system(),
                        attempt,
                        retry_in_ms = backoff.as_millis() as u64,
                        error = %error,
                        "database not ready; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }

    /// Whether the migrations have been applied.
    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Ready means migrated and answering a trivial query now.
    pub async fn is_ready(&self) -> bool {
        if !self.is_migrated() {
            return false;
        }
        let ping = async {
            on_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(()))
        )
    }

    /// An indexed read: the item with this SKU (unique index).
    pub async fn item_by_sku(&self, sku: &str) -> Result<Option<Item>, sqlx::Error> {
        const SQL: &str =
            "SELECT sku, name, category, price_cents, stock FROM catalog_items WHERE sku = $1";
        let query = async {
            on_pool!(&self.pool, p => sqlx::query_as::<_, Item>(SQL).bind(sku).fetch_optional(p).await)
        };
        let span = self.client_span("SELECT catalog_items", SQL);
        self.run(Query::ItemBySku, span, query).await
    }

    /// The whole catalog aggregated per category: the slow endpoint's dataset.
    pub async fn stock_by_category(&self) -> Result<Vec<CategoryStock>, sqlx::Error> {
        // CAST keeps PostgreSQL's SUM(bigint) (numeric) and SQLite's integer alike.
        const SQL: &str = "SELECT category, \
                CAST(COUNT(*) AS BIGINT) AS items, \
                CAST(SUM(stock) AS BIGINT) AS units_in_stock, \
                CAST(SUM(price_cents * stock) AS BIGINT) AS inventory_value_cents, \
                CAST(SUM(price_cents) AS BIGINT) AS price_total_cents \
            FROM catalog_items GROUP BY category ORDER BY category";
        let query = async {
            on_pool!(&self.pool, p => sqlx::query_as::<_, CategoryStock>(SQL).fetch_all(p).await)
        };
        let span = self.client_span("SELECT catalog_items", SQL);
        self.run(Query::StockByCategory, span, query).await
    }

    /// The canary regression's extra lookup (`crate::canary`): how many items
    /// have a name containing `name`. The leading wildcard defeats every
    /// index, so this scans the whole table, on purpose.
    pub async fn count_items_named_like(&self, name: &str) -> Result<i64, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) FROM catalog_items WHERE name LIKE '%' || $1 || '%'";
        let query = async {
            on_pool!(&self.pool, p => sqlx::query_scalar::<_, i64>(SQL).bind(name).fetch_one(p).await)
        };
        let span = tracing::info_span!(
            "db.query",
            otel.name = EXTRA_QUERY_SPAN,
            otel.kind = "client",
            db.system.name = self.system(),
            db.query.text = SQL,
            regression = "REGRESSION_EXTRA_QUERY",
        );
        self.run(Query::ItemsNamedLike, span, query).await
    }

    /// Runs `query` in its client `span`, timed from inside the span: the
    /// exemplar of a sampled query names the query's own span.
    async fn run<T>(
        &self,
        query: Query,
        span: tracing::Span,
        future: impl Future<Output = T>,
    ) -> T {
        async {
            let started = Instant::now();
            let output = future.await;
            self.query_durations
                .observe(&[query.label()], started.elapsed().as_secs_f64());
            output
        }
        .instrument(span)
        .await
    }

    fn client_span(&self, name: &'static str, statement: &'static str) -> tracing::Span {
        tracing::info_span!(
            "db.query",
            otel.name = name,
            otel.kind = "client",
            db.system.name = self.system(),
            db.query.text = statement,
        )
    }
}
