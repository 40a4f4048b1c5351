//! A limit on the size of a request's header block, whatever its shape.
//!
//! In the mesh, Envoy refuses header blocks over 60 KiB with 431; the
//! services apply the same limit so a request behaves alike with and
//! without the sidecar. actix-web's own limits are a count (96 headers)
//! and a 128 KiB read buffer, so a single 100 KiB header would pass.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest};

/// The largest header block served: Envoy's default
/// `max_request_headers_kb` (60 KiB).
pub const MAX_HEADER_BYTES: usize = 60 * 1024;

/// The size of the request line plus header block as it came on the wire
/// (`name: value\r\n` per header).
pub fn header_block_bytes(request: &HttpRequest) -> usize {
    let line =
        request.method().as_str().len() + request.uri().to_string().len() + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    line + headers
}

/// A service's answer to a header block over the limit (431, in its own
/// format: problem+json, or an HTML page).
pub trait HeadersTooLarge: Into<Error> {
    /// The error for a header block of `bytes` bytes.
    fn headers_too_large(bytes: usize) -> Self;
}

/// Middleware answering 431 with `E`'s response when the header block
/// exceeds [`MAX_HEADER_BYTES`]; [`super::Stack`] puts it innermost.
pub async fn header_limit<E: HeadersTooLarge>(
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let size = header_block_bytes(request.request());
    if size > MAX_HEADER_BYTES {
        return Ok(request.error_response(E::headers_too_large(size)));
    }
    next.call(request).await
}
