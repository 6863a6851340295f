//! Which addresses an outbound fetch of a URL the gateway was handed (a carrier's label
//! link) may reach: public unicast addresses only, so the fetch can never be turned
//! against loopback, the private network or a cloud metadata service (SSRF).
//!
//! The rule is enforced twice, because either alone can be slipped past:
//! - on the URL of every hop ([`HostRules::check_url`]): scheme, the optional host allow
//!   list, and any IP literal (the URL parser has already turned odd spellings such as
//!   `0x7f.1`, `2130706433` or `0177.0.0.1` into `127.0.0.1`);
//! - on the addresses a name resolves to, at connect time ([`PublicResolver`], the HTTP
//!   client's resolver): only public ones are returned, so a name that resolves to a
//!   private address, or re-resolves to one later (DNS rebinding), is never connected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether `ip` is a public unicast address: not loopback, private, link-local,
/// unique-local, shared (CGNAT), multicast, broadcast, unspecified, documentation,
/// benchmarking or reserved, and no IPv6 form that embeds such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", unspecified
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[0] & 0xff00 == 0xff00 // multicast
        || s[0] & 0xffc0 == 0xfe80 // link-local
        || s[0] & 0xffc0 == 0xfec0 // site-local (deprecated)
        || s[0] & 0xfe00 == 0xfc00 // unique-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || s[0] < 0x2000 // everything outside global unicast 2000::/3
        || s[0] >= 0x4000)
}

/// The IPv4 address an IPv6 address stands for, where it stands for one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && (s[6] != 0 || s[7] > 1))) {
        return Some(tail());
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(tail());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Why a URL may not be fetched. One message for every refused target, so the answer
/// tells nothing about what listens there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the URL is not an allowed carrier address")]
pub struct NotAllowed;

/// The rules every hop's URL is held to.
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    /// Exact host names, or `*.suffix` (any name under `suffix`). Empty: any public host.
    pub allow_hosts: Vec<String>,
    /// Plain `http://` allowed besides `https://`.
    pub allow_http: bool,
    /// Exact `ip:port` pairs allowed although not public (the test suite's stand-in
    /// carrier, or an on-premises mirror). Only IP literals can match, never a name.
    pub allow_private: Vec<SocketAddr>,
}

impl HostRules {
    /// Checks a hop's URL: scheme, host allow list, and an IP literal's address.
    pub fn check_url(&self, url: &url::Url) -> Result<(), NotAllowed> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(NotAllowed),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(NotAllowed);
        }
        let port = url.port_or_known_default().ok_or(NotAllowed)?;
        let ip = match url.host().ok_or(NotAllowed)? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(name) => {
                // A name that still parses as an address (the URL parser normalises the
                // odd IPv4 spellings, but not every client does): judge the address.
                name.trim_end_matches('.').parse::<IpAddr>().ok()
            }
        };
        let host = url.host_str().unwrap_or("").trim_end_matches('.');
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| host_matches(p, host)) {
            return Err(NotAllowed);
        }
        match ip {
            Some(ip) if is_public(ip) => Ok(()),
            Some(ip) if self.allow_private.contains(&SocketAddr::new(ip, port)) => Ok(()),
            Some(_) => Err(NotAllowed),
            // A name: its addresses are checked when it is resolved, at connect time.
            None => Ok(()),
        }
    }
}

/// `*.example.com` matches any name under `example.com` (not the name itself); anything
/// else matches exactly, without regard to case.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// The HTTP client's resolver for carrier fetches: the system resolver, keeping only
/// public addresses. A name with none left fails to resolve, so it is never connected.
#[derive(Debug, Clone, Default)]
pub struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(NotAllowed) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl PublicResolver {
    pub fn shared() -> Arc<PublicResolver> {
        Arc::new(PublicResolver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(!is_public(ip(a)), "{a} must not be public");
        }
    }

    #[test]
    fn ordinary_internet_addresses_are_public() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(a)), "{a} is public");
        }
    }

    fn check(rules: &HostRules, url: &str) -> Result<(), NotAllowed> {
        rules.check_url(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn odd_spellings_of_loopback_are_refused() {
        let rules = HostRules::default();
        for u in [
            "https://127.0.0.1/x",
            "https://0x7f.1/x",
            "https://0x7f000001/x",
            "https://2130706433/x",
            "https://0177.0.0.1/x",
            "https://127.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://0.0.0.0/x",
        ] {
            assert_eq!(check(&rules, u), Err(NotAllowed), "{u}");
        }
        assert_eq!(check(&rules, "https://8.8.8.8/x"), Ok(()));
        assert_eq!(check(&rules, "https://carrier.example/x"), Ok(()));
    }

    #[test]
    fn scheme_credentials_and_allow_list_are_enforced() {
        let rules = HostRules {
            allow_hosts: vec!["labels.ups.test".into(), "*.fedex.test".into()],
            ..HostRules::default()
        };
        assert_eq!(check(&rules, "https://labels.ups.test/a.pdf"), Ok(()));
        assert_eq!(check(&rules, "https://LABELS.UPS.TEST./a.pdf"), Ok(()));
        assert_eq!(check(&rules, "https://a.b.fedex.test/a.pdf"), Ok(()));
        for u in [
            "https://fedex.test/a.pdf",
            "https://evilfedex.test/a.pdf",
            "https://labels.ups.test.evil.test/a.pdf",
            "https://8.8.8.8/a.pdf",
            "http://labels.ups.test/a.pdf",
            "ftp://labels.ups.test/a.pdf",
            "https://user:pw@labels.ups.test/a.pdf",
        ] {
            assert_eq!(check(&rules, u), Err(NotAllowed), "{u}");
        }
    }

    #[test]
    fn a_private_address_is_allowed_only_as_the_exact_listed_socket() {
        let rules = HostRules {
            allow_http: true,
            allow_private: vec!["127.0.0.1:4000".parse().unwrap()],
            ..HostRules::default()
        };
        assert_eq!(check(&rules, "http://127.0.0.1:4000/a"), Ok(()));
        assert_eq!(check(&rules, "http://0x7f.1:4000/a"), Ok(()));
        assert_eq!(check(&rules, "http://127.0.0.1:4001/a"), Err(NotAllowed));
        assert_eq!(check(&rules, "http://127.0.0.2:4000/a"), Err(NotAllowed));
    }

    #[tokio::test]
    async fn the_resolver_never_returns_a_private_address() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(PublicResolver.resolve(name).await.is_err());
    }
}
