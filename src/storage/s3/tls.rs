//! TLS to storage and the pooled client's connector.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::http::Body;

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// TLS for storage: the webpki roots through ring, offering HTTP/1.1 (what `direct.rs`
/// speaks). `doctor` checks the endpoint's certificate with the same configuration.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub(super) fn build_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map(|b| {
            b.https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http.clone())
        })
        .unwrap_or_else(|_| {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http)
        });
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(512)
        // hyper's adaptive read buffer grows to ~400 KiB per connection, and since body
        // frames are slices of it, `BytesMut` keeps doubling it while one is in flight
        // (seen as ~460 KiB per pooled connection under the soak). A fixed 16 KiB read
        // (one TLS record) bounds each connection near 32 KiB at no measurable cost.
        .http1_read_buf_exact_size(16 * 1024)
        .build(https)
}
