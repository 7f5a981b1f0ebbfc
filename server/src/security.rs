//! What every response says to the browser about itself, and what the logs may say about a
//! request.
//!
//! Room pages carry their token in the address (`?token=`), so no page may be framed by another
//! site or leak its address through the Referer, and tokens never reach the log at any level.
//! Pages get their full Content-Security-Policy, with the hydration script's nonce, from
//! `app::shell`; every other response gets a restrictive one here.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the security headers a response does not set itself.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    set(headers, header::CONTENT_SECURITY_POLICY, DEFAULT_CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    response
}

/// A request's path and query for the log, with every token's value replaced.
pub fn redacted(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else { return path.to_owned() };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("token") || key.to_ascii_lowercase().ends_with("token") => {
                format!("{key}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_log() {
        let uri: axum::http::Uri = "/rooms/a?token=secret&x=1&owner_token=s2".parse().expect("uri");
        let logged = redacted(&uri);
        assert!(!logged.contains("secret") && !logged.contains("s2"), "{logged}");
        assert_eq!(logged, "/rooms/a?token=[redacted]&x=1&owner_token=[redacted]");
        assert_eq!(redacted(&"/health".parse().expect("uri")), "/health");
    }
}
