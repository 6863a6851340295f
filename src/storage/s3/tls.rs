//! TLS to storage (the web PKI's roots and `storage.ca_file`'s) and the pooled client's
//! connector.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::http::Body;

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The certificates storage connections trust: the web PKI's roots, and those of
/// `storage.ca_file` (a private CA) when set.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: a certificate is not usable: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// The PEM certificates of `path`; an error when it cannot be read or holds none.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// TLS for storage through ring, trusting [`roots`]; no ALPN (each client sets its own).
fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots(ca_file)?)
    .with_no_client_auth())
}

/// TLS for storage offering HTTP/1.1 (what `direct.rs` speaks). `doctor` checks the
/// endpoint's certificate with the same configuration.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut config = client_config(ca_file)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The pooled client (HTTP/1.1 and HTTP/2, https or http) trusting the same roots.
pub(super) fn build_client(
    connect_timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_file)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(512)
        // hyper's adaptive read buffer grows to ~400 KiB per connection, and since body
        // frames are slices of it, `BytesMut` keeps doubling it while one is in flight
        // (seen as ~460 KiB per pooled connection under the soak). A fixed 16 KiB read
        // (one TLS record) bounds each connection near 32 KiB at no measurable cost.
        .http1_read_buf_exact_size(16 * 1024)
        .build(https))
}

/// The fix for a refused storage certificate, from rustls's reason, when it is one.
pub fn tls_fix(why: &str) -> Option<&'static str> {
    let why = why.to_ascii_lowercase().replace(' ', "");
    if why.contains("unknownissuer") {
        Some(
            "the endpoint's certificate is not from a CA this gateway trusts: for a private \
             CA, set storage.ca_file to its PEM certificate",
        )
    } else if why.contains("notvalidforname") {
        Some(
            "the endpoint's certificate is for another name: check the host of \
             SPACES_ENDPOINT_URL (storage.endpoint) and storage.addressing",
        )
    } else {
        None
    }
}
