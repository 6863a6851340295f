//! `label-gateway check-config`: the configuration as the gateway will run it, in a few
//! lines an operator can read, and warnings for settings that are valid but risky.

use crate::config::{Backend, Config, OnDeny};

/// What `check-config` prints: summary lines, then warnings.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn check(config: &Config) -> Report {
    let s = &config.server;
    let mut r = Report::default();
    let mut line = |k: &str, v: String| r.lines.push(format!("  {k:<10} {v}"));
    line("listen", s.listen.to_string());
    line(
        "internal",
        if s.internal_on_public {
            format!("{} and the public listener", s.internal_listen)
        } else {
            format!("{} (/internal/..., /metrics)", s.internal_listen)
        },
    );
    line(
        "storage",
        match config.storage.backend {
            Backend::Local => format!("local {}", config.storage.local_root.display()),
            Backend::S3 => format!(
                "s3 {} bucket {} under {}/",
                config.storage.endpoint, config.storage.bucket, config.storage.location
            ),
        },
    );
    let fb = &config.storage.fallback;
    if fb.enabled() {
        line(
            "fallback",
            format!(
                "s3 {} bucket {}: reads go there first after {} primary faults in a row,                  the primary retried every {}",
                fb.endpoint,
                fb.bucket,
                fb.after_failures,
                humantime::format_duration(fb.probe_every)
            ),
        );
    }
    line("check", config.auth.check_url.clone());
    line(
        "access",
        if config.auth.check_url.contains("{tracking}") {
            "per label: the app decides for each tracking number (the shipped view lets \
             every logged-in user read every label unless LABEL_GATEWAY_ACCESS_CHECK is set)"
                .to_string()
        } else {
            "per session: any session the app accepts may read every label".to_string()
        },
    );
    line(
        "on deny",
        match config.auth.on_deny {
            OnDeny::NotFound => "404 (reveals nothing)".to_string(),
            OnDeny::Redirect => format!("302 to {}", config.auth.login_url),
        },
    );
    line(
        "delivery",
        if config.redirect.enabled {
            format!(
                "redirect: 307 to a presigned URL valid {} ({}{})",
                humantime::format_duration(config.redirect.expires),
                if config.redirect.host.is_empty() {
                    "storage endpoint".to_string()
                } else {
                    format!("host {}", config.redirect.host)
                },
                if config.redirect.check_exists {
                    ", HEAD first"
                } else {
                    ""
                }
            )
        } else {
            "stream: the bytes pass through the gateway".to_string()
        },
    );
    line(
        "fleet",
        format!(
            "hash nginx upstreams by tracking number; this copy: max_connections {}, \
             trusted_proxies {:?}",
            s.max_connections, s.trusted_proxies
        ),
    );
    line(
        "cache",
        if config.cache.enabled {
            format!(
                "{} in memory, labels up to {}, fresh for {}, served stale {} more while \
                 storage fails, hot list {}",
                config.cache.max_bytes,
                config.cache.max_object_bytes,
                humantime::format_duration(config.cache.ttl),
                humantime::format_duration(config.cache.stale_if_error),
                config
                    .cache
                    .hot_list()
                    .map_or("off".to_string(), |p| p.display().to_string())
            )
        } else {
            "off".to_string()
        },
    );
    if s.internal_on_public && !s.listen.ip().is_loopback() {
        r.warnings.push(format!(
            "server.internal_on_public is on and server.listen ({}) is not a loopback \
             address: /metrics and the token-guarded /internal/ routes are reachable \
             wherever the label port is",
            s.listen
        ));
    }
    if !s.internal_listen.ip().is_loopback() {
        r.warnings.push(format!(
            "server.internal_listen ({}) is not a loopback address: make sure only the app \
             can reach it",
            s.internal_listen
        ));
    }
    if !config.auth.check_url.contains("{tracking}") {
        r.warnings.push(
            "auth.check_url has no {tracking}: every logged-in user can read every label"
                .to_string(),
        );
    }
    if fb.enabled() && config.redirect.enabled {
        r.warnings.push(
            "redirect mode sends clients to the primary bucket only: while it is down,              redirected labels fail (streamed ones fail over to storage.fallback)"
                .to_string(),
        );
    }
    if config.internal.token.is_none() {
        r.warnings.push(
            "LABEL_GATEWAY_INTERNAL__TOKEN is not set: every /internal/ call is refused"
                .to_string(),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn the_shipped_defaults_warn_only_about_the_missing_token() {
        let r = check(&config(""));
        assert!(r.lines.iter().any(|l| l.contains("127.0.0.1:9090")));
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("INTERNAL__TOKEN"));
    }

    #[test]
    fn internal_routes_on_a_public_address_are_warned_about() {
        let r = check(&config(
            "[server]\nlisten = \"0.0.0.0:8080\"\ninternal_on_public = true\n",
        ));
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("internal_on_public") && w.contains("0.0.0.0:8080")),
            "{:?}",
            r.warnings
        );
        let r = check(&config("[server]\nlisten = \"0.0.0.0:8080\"\n"));
        assert!(!r.warnings.iter().any(|w| w.contains("internal_on_public")));
    }

    #[test]
    fn the_delivery_mode_is_reported() {
        let r = check(&config(""));
        assert!(r.lines.iter().any(|l| l.contains("stream")));
        let toml = "[storage]\nbackend = \"s3\"\n[redirect]\nenabled = true\nexpires = \"2m\"\n";
        let env: BTreeMap<String, String> = [
            ("SPACES_ACCESS_KEY_ID".to_string(), "k".to_string()),
            ("SPACES_SECRET_ACCESS_KEY".to_string(), "s".to_string()),
        ]
        .into();
        let r = check(&Config::from_toml_str(toml, &env).unwrap());
        assert!(
            r.lines
                .iter()
                .any(|l| l.contains("redirect") && l.contains("2m") && l.contains("HEAD first")),
            "{:?}",
            r.lines
        );
    }

    #[test]
    fn a_fallback_bucket_is_reported_and_redirect_mode_beside_it_warned_about() {
        let env: BTreeMap<String, String> = [
            ("SPACES_ACCESS_KEY_ID", "k"),
            ("SPACES_SECRET_ACCESS_KEY", "s"),
            ("SPACES_FALLBACK_ACCESS_KEY_ID", "fk"),
            ("SPACES_FALLBACK_SECRET_ACCESS_KEY", "fs"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let toml = "[storage]\nbackend = \"s3\"\n[storage.fallback]\n\
                    endpoint = \"https://ams3.digitaloceanspaces.com\"\nbucket = \"labels-ams3\"\n\
                    region = \"ams3\"\n";
        let r = check(&Config::from_toml_str(toml, &env).unwrap());
        assert!(
            r.lines
                .iter()
                .any(|l| l.contains("fallback") && l.contains("labels-ams3") && l.contains("10s")),
            "{:?}",
            r.lines
        );
        assert!(!r.warnings.iter().any(|w| w.contains("redirect")));
        let toml = format!("{toml}[redirect]\nenabled = true\n");
        let r = check(&Config::from_toml_str(&toml, &env).unwrap());
        assert!(r.warnings.iter().any(|w| w.contains("primary bucket only")));
    }

    #[test]
    fn the_access_model_is_said_plainly() {
        let r = check(&config(
            "[auth]\ncheck_url = \"http://127.0.0.1:8000/accounts/profile/\"\n",
        ));
        assert!(r.lines.iter().any(|l| l.contains("per session")));
        assert!(r
            .warnings
            .iter()
            .any(|w| w.contains("every logged-in user can read every label")));
        let r = check(&config(""));
        assert!(r
            .lines
            .iter()
            .any(|l| l.contains("LABEL_GATEWAY_ACCESS_CHECK")));
    }
}
