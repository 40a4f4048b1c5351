//! The benchmark's ceilings: the least a front -> back hop costs on this
//! machine with the services' own building blocks (actix-web, one pooled
//! reqwest client) and nothing else: no tracing, no metrics, no logs, no
//! templates. `back` answers without a database (the bare ceiling);
//! `back-database` runs business-logic's own indexed read
//! (`business_logic::db::Database::item_by_sku`, same SQL, same pool
//! settings) against `--database-url` first (the database ceiling). No
//! tracing subscriber is installed, so the query's span is a no-op.
//!
//! ```sh
//! PORT=9001 ceiling back        # or: ceiling back-database --database-url sqlite://c.db
//! PORT=9000 ceiling front --backend-url http://127.0.0.1:9001
//! curl localhost:9000/fast-page
//! ```
#![allow(clippy::print_stdout)] // its one log line, like the services' "listening" line

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use business_logic::db::Database;
use business_logic::settings::Settings;
use clap::{Parser, ValueEnum};
use contract::routes::{business_logic as back, front_end};
use contract::{FastAnswer, Item};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// `GET /fast-endpoint`: a small JSON item, like business-logic's.
    Back,
    /// `GET /fast-endpoint`: the same item read by business-logic's own
    /// query from `--database-url` (migrated and seeded at start).
    BackDatabase,
    /// `GET /fast-page`: calls the back and renders a small HTML page.
    Front,
}

/// Minimal actix-web front and back for the benchmark's ceiling.
#[derive(Debug, Parser)]
struct Args {
    mode: Mode,
    /// The back's base URL (front mode); default: business-logic's port.
    #[arg(long, default_value_t = format!("http://127.0.0.1:{}", back::DEFAULT_PORT))]
    backend_url: String,
    /// The database (back-database mode): `sqlite://FILE` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://ceiling.db")]
    database_url: String,
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "PORT", default_value_t = 0)]
    port: u16,
}

#[derive(Debug)]
struct Front {
    client: reqwest::Client,
    fast_url: String,
}

async fn fast_endpoint() -> HttpResponse {
    let n = fastrand::u32(1..=5000);
    HttpResponse::Ok().json(FastAnswer {
        endpoint: "fast".into(),
        version: None,
        item: Item {
            sku: format!("SKU-{n:05}"),
            name: format!("Item {n}"),
            category: "tools".into(),
            price_cents: i64::from(n) * 7,
            stock: i64::from(n % 100),
        },
        elapsed_ms: 0.0,
        trace_id: None,
    })
}

/// The same random SKU business-logic picks, read the way it reads it.
async fn fast_endpoint_database(db: web::Data<Database>) -> HttpResponse {
    let sku = format!("SKU-{:05}", fastrand::u32(1..=5000));
    match db.item_by_sku(&sku).await {
        Ok(Some(item)) => HttpResponse::Ok().json(FastAnswer {
            endpoint: "fast".into(),
            item,
            elapsed_ms: 0.0,
            trace_id: None,
            version: None,
        }),
        Ok(None) => HttpResponse::NotFound().body(format!("item {sku:?} not found")),
        Err(error) => HttpResponse::ServiceUnavailable().body(error.to_string()),
    }
}

async fn fast_page(front: web::Data<Front>) -> HttpResponse {
    let answer = match front.client.get(&front.fast_url).send().await {
        Ok(response) if response.status().is_success() => response.json::<FastAnswer>().await,
        Ok(response) => {
            return HttpResponse::BadGateway().body(format!("back answered {}", response.status()));
        }
        Err(error) => Err(error),
    };
    match answer {
        Ok(FastAnswer { item, .. }) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(format!(
                "<!doctype html><title>Fast page</title><h1>{}</h1><p>{} · {} · {}.{:02} · {} in stock</p>",
                item.name,
                item.sku,
                item.category,
                item.price_cents / 100,
                item.price_cents % 100,
                item.stock
            )),
        Err(error) => HttpResponse::BadGateway().body(error.to_string()),
    }
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = std::net::TcpListener::bind((args.host.as_str(), args.port))?;
    let port = listener.local_addr()?.port();
    let server = match args.mode {
        Mode::Back => HttpServer::new(|| {
            App::new()
                .route(back::FAST_ENDPOINT, web::get().to(fast_endpoint))
                .route(back::READYZ, web::get().to(ready))
        })
        .listen(listener)?
        .run(),
        Mode::BackDatabase => {
            // business-logic's pool, sized as business-logic sizes it by default.
            let db = Database::connect_lazy(
                &args.database_url,
                Settings::default().database_max_connections,
            )?;
            // As business-logic starts: retried until the database answers
            // (under callgrind on a busy machine the first connection can
            // miss the pool's acquire timeout).
            db.migrate_with_retry().await;
            let db = web::Data::new(db);
            HttpServer::new(move || {
                App::new()
                    .app_data(db.clone())
                    .route(back::FAST_ENDPOINT, web::get().to(fast_endpoint_database))
                    .route(back::READYZ, web::get().to(ready))
            })
            .listen(listener)?
            .run()
        }
        Mode::Front => {
            let front = web::Data::new(Front {
                client: reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .pool_idle_timeout(Duration::from_secs(30))
                    .tcp_nodelay(true)
                    .build()?,
                fast_url: format!(
                    "{}{}",
                    args.backend_url.trim_end_matches('/'),
                    back::FAST_ENDPOINT
                ),
            });
            HttpServer::new(move || {
                App::new()
                    .app_data(front.clone())
                    .route(front_end::FAST_PAGE, web::get().to(fast_page))
                    .route(front_end::READYZ, web::get().to(ready))
            })
            .listen(listener)?
            .run()
        }
    };
    println!("ceiling {:?} listening port={port}", args.mode);
    server.await?;
    Ok(())
}
