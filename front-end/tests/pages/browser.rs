//! A person's view: headless Chromium (Debian `chromium` + `chromium-driver`)
//! opens the landing page, clicks "Fast page", then "Slow page", and sees
//! each result with its trace id. Screenshots go to `target/screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::Stack;

/// chromedriver on a free loopback port; killed when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver() -> Option<Driver> {
    let found = ["/usr/bin/chromedriver", "/usr/bin/chromium"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !found {
        assert!(
            !test_support::in_ci(),
            "chromium and chromium-driver must be installed in CI"
        );
        eprintln!(
            "chromium/chromedriver not installed (apt-get install chromium chromium-driver): browser test not run"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = test_support::wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(ready.is_some(), "chromedriver did not start");
    Some(Driver(child, port))
}

fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/screenshots
    let dir = exe.ancestors().nth(3).unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_clicks_fast_page_then_slow_page_and_sees_each_trace() {
    let Some(driver) = start_driver() else { return };
    let stack = Stack::start(&[]).await;
    let profile = std::env::temp_dir().join(format!("chromium-profile-{:016x}", fastrand::u64(..)));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a chromium session");
    let shots = screenshot_dir();

    let result = async {
        browser.goto(&stack.front.url("/")).await?;
        std::fs::write(shots.join("landing.png"), browser.screenshot().await?).unwrap();

        for (button, title, shot) in [
            ("fast-page", "Fast page", "fast-page.png"),
            ("slow-page", "Slow page", "slow-page.png"),
        ] {
            browser.goto(&stack.front.url("/")).await?;
            browser.find(Locator::Id(button)).await?.click().await?;
            let heading = browser
                .wait()
                .for_element(Locator::Id("result-title"))
                .await?;
            assert_eq!(heading.text().await?, title);
            let trace_id = browser.find(Locator::Id("trace-id")).await?.text().await?;
            assert!(
                trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{title}: trace id {trace_id:?}"
            );
            let jaeger = browser
                .find(Locator::Id("jaeger-link"))
                .await?
                .attr("href")
                .await?;
            assert_eq!(
                jaeger.as_deref(),
                Some(format!("http://localhost:8080/jaeger/trace/{trace_id}").as_str())
            );
            let answer = browser.find(Locator::Id("answer")).await?.text().await?;
            assert!(!answer.is_empty());
            // The page the person sees is the page the front-end served under that trace.
            assert!(
                stack
                    .front
                    .logs()
                    .iter()
                    .any(|l| l.contains(&format!("trace_id={trace_id}")))
            );
            std::fs::write(shots.join(shot), browser.screenshot().await?).unwrap();
        }
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    result.unwrap();
}
