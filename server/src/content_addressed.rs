//! Responses for files named by the SHA-256 of their content (shards, thumbnails): such a file
//! never changes, so it is served once with an ETag and `immutable` caching, and a client that
//! holds it gets a 304 without the server reading anything.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The ETag of the file named `hash`.
pub fn etag(hash: &str) -> String {
    format!("\"{hash}\"")
}

/// A 304 when the request already holds `etag`.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> Option<Response> {
    let held = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag);
    held.then(|| (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.to_owned())]).into_response())
}

/// The file's bytes, cached for a year and never revalidated.
pub fn immutable(bytes: Vec<u8>, content_type: &'static str, etag: &str) -> Response {
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    response
}
