//! `label-gateway health`: asks a running gateway's `/healthz` on the configured public
//! listen address, for a container's `HEALTHCHECK` (the runtime image has no curl).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Config;
use crate::outbound::{describe, USER_AGENT};

/// How long `health` waits for the answer unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where `/healthz` is asked for a gateway listening on `listen`: a wildcard address
/// (`0.0.0.0`, `::`) is reached on loopback.
pub fn healthz_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, listen.port()))
}

/// GET `/healthz` of the gateway `config` describes, within `timeout`: `Ok` with what was
/// asked and answered when it answers 200, `Err` saying why not otherwise.
pub async fn health(config: &Config, timeout: Duration) -> Result<String, String> {
    let url = healthz_url(config.server.listen);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    match client.get(&url).send().await {
        Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
            Ok(format!("{url}: {}", resp.status()))
        }
        Ok(resp) => Err(format!("{url}: {}", resp.status())),
        Err(e) => Err(format!("{url}: {}", describe(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_asked_on_loopback() {
        let url = |s: &str| healthz_url(s.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/healthz");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/healthz");
        assert_eq!(url("10.0.0.5:81"), "http://10.0.0.5:81/healthz");
    }
}
