//! The endpoint check: DNS, TCP and TLS to the storage host, each within the connect
//! timeout.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Check, Status, ENDPOINT};

/// DNS, TCP and (for https) TLS to the host of `url`, each within `timeout`.
pub async fn reach(url: &str, timeout: Duration) -> Check {
    let fail = |finding: String, fix: &str| Check {
        name: ENDPOINT,
        status: Status::Fail,
        finding,
        fix: Some(fix.to_string()),
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return fail(format!("{url} is not a URL"), "check SPACES_ENDPOINT_URL");
    };
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return fail(
                    format!("{host} does not resolve: {e}"),
                    "check SPACES_ENDPOINT_URL (storage.endpoint) and this machine's DNS",
                )
            }
            Err(_) => {
                return fail(
                    format!("{host} did not resolve within {timeout:?}"),
                    "check this machine's DNS resolver",
                )
            }
        };
    let Some(addr) = addrs.first().copied() else {
        return fail(
            format!("{host} resolves to no address"),
            "check SPACES_ENDPOINT_URL (storage.endpoint) and this machine's DNS",
        );
    };
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return fail(
                format!("{host}:{port} ({}) refused the connection: {e}", addr.ip()),
                "nothing listens there: check SPACES_ENDPOINT_URL (host and port) and that \
                 the service is up",
            )
        }
        Err(_) => {
            return fail(
                format!(
                    "no TCP connection to {host}:{port} ({}) within storage.connect_timeout \
                     ({timeout:?})",
                    addr.ip()
                ),
                "a firewall or egress rule may drop the traffic; check SPACES_ENDPOINT_URL \
                 and the network path",
            )
        }
    };
    let mut finding = format!("{host}:{port} resolves to {}; TCP connected", addr.ip());
    if https {
        match tokio::time::timeout(timeout, tls_handshake(tcp, &host)).await {
            Ok(Ok(version)) => finding.push_str(&format!("; TLS ({version}) verified")),
            Ok(Err(e)) => {
                return fail(
                    format!("TLS with {host}:{port} failed: {e}"),
                    "check that SPACES_ENDPOINT_URL is the https endpoint of the service \
                     and that nothing on the way intercepts TLS",
                )
            }
            Err(_) => {
                return fail(
                    format!("no TLS handshake with {host}:{port} within {timeout:?}"),
                    "check that the port speaks TLS (https://) or use http:// for a plain \
                     endpoint",
                )
            }
        }
    }
    Check {
        name: ENDPOINT,
        status: Status::Ok,
        finding,
        fix: None,
    }
}

/// A TLS handshake on `tcp`, the certificate checked against the web PKI for `host`.
pub(super) async fn tls_handshake(
    tcp: tokio::net::TcpStream,
    host: &str,
) -> Result<String, String> {
    // The configuration the gateway's own storage connections use.
    let tls = crate::storage::s3::tls_config()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "unknown version".into());
    Ok(version)
}
