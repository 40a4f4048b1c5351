//! The benchmark's ceilings: the least a front -> back hop costs on this
//! machine with the services' own building blocks (actix-web, one pooled
//! reqwest client) and nothing else: no tracing, metrics, logs or templates.
//! `back` answers without a database (the bare ceiling); `back-database`
//! first runs business-logic's own indexed read
//! (`business_logic::db::Database::item_by_sku`, same SQL, same pool
//! settings) on `--database-url` (the database ceiling). No tracing
//! subscriber is installed, so the query's span is a no-op.
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
    /// `GET /fast-endpoint`: the item read by business-logic's own query
    /// from `--database-url` (migrated and seeded at start).
    BackDatabase,
    /// `GET /fast-page`: calls the back and renders a small HTML page.
    Front,
}

/// Minimal actix-web front and back for the benchmark's ceiling.
#[derive(Debug, Parser)]
struct Args {
    mode: Mode,
    /// The back's base URL (front mode).
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

fn answer(item: Item) -> HttpResponse {
    let (endpoint, elapsed_ms) = ("fast".to_owned(), 0.0);
    HttpResponse::Ok().json(FastAnswer {
        endpoint,
        version: None,
        item,
        elapsed_ms,
        trace_id: None,
    })
}

/// A random SKU, as business-logic picks one.
fn sku() -> (u32, String) {
    let n = fastrand::u32(1..=5000);
    (n, format!("SKU-{n:05}"))
}

async fn fast_endpoint() -> HttpResponse {
    let (n, sku) = sku();
    let (name, category) = (format!("Item {n}"), "tools".to_owned());
    let (price_cents, stock) = (i64::from(n) * 7, i64::from(n % 100));
    answer(Item {
        sku,
        name,
        category,
        price_cents,
        stock,
    })
}

async fn fast_endpoint_database(db: web::Data<Database>) -> HttpResponse {
    let (_, sku) = sku();
    match db.item_by_sku(&sku).await {
        Ok(Some(item)) => answer(item),
        Ok(None) => HttpResponse::NotFound().body(format!("item {sku:?} not found")),
        Err(error) => HttpResponse::ServiceUnavailable().body(error.to_string()),
    }
}

async fn fast_page(client: web::Data<reqwest::Client>, url: web::Data<String>) -> HttpResponse {
    let answer = async {
        let response = client.get(url.as_str()).send().await?.error_for_status()?;
        response.json::<FastAnswer>().await
    };
    match answer.await {
        Ok(FastAnswer { item: i, .. }) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
            "<!doctype html><title>Fast page</title><h1>{}</h1><p>{} · {} · {}.{:02} · {} in stock</p>",
            i.name,
            i.sku,
            i.category,
            i.price_cents / 100,
            i.price_cents % 100,
            i.stock
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
    // business-logic's pool, sized as business-logic sizes it, migrated as
    // it starts: retried until the database answers.
    let db = match args.mode {
        Mode::BackDatabase => {
            let size = Settings::default().database_max_connections;
            let db = Database::connect_lazy(&args.database_url, size)?;
            db.migrate_with_retry().await;
            Some(web::Data::new(db))
        }
        _ => None,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?;
    let (client, backend) = (
        web::Data::new(client),
        args.backend_url.trim_end_matches('/'),
    );
    let url = web::Data::new(format!("{backend}{}", back::FAST_ENDPOINT));
    let mode = args.mode;
    let server = HttpServer::new(move || {
        let app = App::new().route(back::READYZ, web::get().to(ready));
        match (mode, &db) {
            (Mode::Back, _) => app.route(back::FAST_ENDPOINT, web::get().to(fast_endpoint)),
            (Mode::BackDatabase, Some(db)) => app
                .app_data(db.clone())
                .route(back::FAST_ENDPOINT, web::get().to(fast_endpoint_database)),
            _ => app
                .app_data(client.clone())
                .app_data(url.clone())
                .route(front_end::FAST_PAGE, web::get().to(fast_page)),
        }
    });
    let server = server.listen(listener)?.run();
    println!("ceiling {mode:?} listening port={port}");
    server.await?;
    Ok(())
}
