//! The benchmark's ceilings: the least a front -> back hop costs on this
//! machine with the services' own building blocks (actix-web, one pooled
//! reqwest client) and nothing else: no tracing, metrics, logs or templates.
//! `back` answers a small item (the bare ceiling) or, given a database, first
//! runs business-logic's own indexed read on it
//! (`business_logic::db::Database::item_by_sku`, same SQL, same pool
//! settings: the database ceiling; no tracing subscriber is installed, so the
//! query's span is a no-op). It reads the services' variables:
//!
//! ```sh
//! PORT=9001 ceiling back        # or: DATABASE_URL=sqlite://c.db PORT=9001 ceiling back
//! PORT=9000 BUSINESS_LOGIC_URL=http://127.0.0.1:9001 ceiling front
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
    /// `GET /fast-endpoint`: an item as JSON, like business-logic's.
    Back,
    /// `GET /fast-page`: calls the back and renders a small HTML page.
    Front,
}

/// Minimal actix-web front and back for the benchmark's ceiling.
#[derive(Debug, Parser)]
struct Args {
    mode: Mode,
    /// The back's base URL (front).
    #[arg(long, env = "BUSINESS_LOGIC_URL", default_value_t = format!("http://127.0.0.1:{}", back::DEFAULT_PORT))]
    backend_url: String,
    /// The database (back; migrated and seeded at start): `sqlite://FILE` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "PORT", default_value_t = 0)]
    port: u16,
}

/// The item of a random SKU, read from `db` as business-logic reads it, or
/// (no database) made up the way the seed makes it.
async fn fast_endpoint(db: web::Data<Option<Database>>) -> HttpResponse {
    let n = fastrand::u32(1..=5000);
    let sku = format!("SKU-{n:05}");
    let item = match db.as_ref() {
        Some(db) => match db.item_by_sku(&sku).await {
            Ok(Some(item)) => item,
            Ok(None) => return HttpResponse::NotFound().body(format!("item {sku:?} not found")),
            Err(error) => return HttpResponse::ServiceUnavailable().body(error.to_string()),
        },
        None => Item {
            sku,
            name: format!("Item {n}"),
            category: "tools".to_owned(),
            price_cents: i64::from(n) * 7,
            stock: i64::from(n % 100),
        },
    };
    HttpResponse::Ok().json(FastAnswer {
        endpoint: "fast".to_owned(),
        version: None,
        item,
        elapsed_ms: 0.0,
        trace_id: None,
    })
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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = std::net::TcpListener::bind((args.host.as_str(), args.port))?;
    let port = listener.local_addr()?.port();
    // business-logic's pool, sized as business-logic sizes it, migrated as
    // it starts: retried until the database answers.
    let db = match (&args.database_url, args.mode) {
        (Some(url), Mode::Back) => {
            let db = Database::connect_lazy(url, Settings::default().database_max_connections)?;
            db.migrate_with_retry().await;
            Some(db)
        }
        _ => None,
    };
    let db = web::Data::new(db);
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?;
    let client = web::Data::new(client);
    let backend = args.backend_url.trim_end_matches('/');
    let url = web::Data::new(format!("{backend}{}", back::FAST_ENDPOINT));
    let mode = args.mode;
    let server = HttpServer::new(move || {
        let ready = || async { HttpResponse::Ok().content_type("text/plain").body("ok") };
        let app = App::new().route(back::READYZ, web::get().to(ready));
        match mode {
            Mode::Back => app
                .app_data(db.clone())
                .route(back::FAST_ENDPOINT, web::get().to(fast_endpoint)),
            Mode::Front => (app.app_data(client.clone()).app_data(url.clone()))
                .route(front_end::FAST_PAGE, web::get().to(fast_page)),
        }
    });
    let server = server.listen(listener)?.run();
    println!("ceiling {mode:?} listening port={port}");
    server.await?;
    Ok(())
}
