//! Idle keep-alive connections: a client that pools connections (the
//! front-end, Envoy) must be the side that closes an idle one. If the server
//! closes it first, a request sent at that moment fails although both
//! services are fine: the front-end answered 502 "business-logic is
//! unreachable" to a burst of pages sent after five idle seconds
//! (actix-web's default keep-alive). Both services now keep idle
//! connections for `service_kit::KEEP_ALIVE`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use test_support::stack::Stack;

/// Longer than actix-web's default keep-alive (5 s), shorter than ours.
const IDLE: Duration = Duration::from_secs(7);

/// One `GET path` on an open connection; the status, or why there was none.
fn get_on(stream: &mut TcpStream, path: &str) -> Result<u16, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .ok_or_else(|| format!("no content-length in {head:?}"))?
        .trim()
        .parse()
        .map_err(|e| format!("content-length: {e}"))?;
    while response.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) => return Err("the body was cut short".into()),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    head.strip_prefix("http/1.1 ")
        .and_then(|h| h.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_stay_open_and_pages_after_a_pause_all_answer() {
    let stack = Stack::start(&[]).await;
    // Warm the front-end's pool to business-logic with concurrent pages.
    let burst = |n: usize| {
        let requests = (0..n).map(|_| async { stack.page("/fast-page").await.0 });
        futures::future::join_all(requests)
    };
    assert!(burst(16).await.iter().all(|s| *s == 200));

    let mut back = connect(stack.backend_port);
    let mut front = connect(stack.front.port());
    assert_eq!(get_on(&mut back, "/healthz"), Ok(200));
    assert_eq!(get_on(&mut front, "/healthz"), Ok(200));

    tokio::time::sleep(IDLE).await;

    // The same connections still serve.
    assert_eq!(get_on(&mut back, "/healthz"), Ok(200), "business-logic");
    assert_eq!(get_on(&mut front, "/healthz"), Ok(200), "front-end");
    // And the front-end's idle pooled connections to business-logic too.
    let statuses = burst(16).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "pages after {IDLE:?} idle: {statuses:?}"
    );
}
