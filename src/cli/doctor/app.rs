//! The app checks: the session check answering a made-up session with a deny, and the
//! regeneration endpoint accepting the token.

use std::time::Duration;

use http::header;

use super::*;
use crate::config::Config;

/// A tracking number no shop has: made up for each run.
pub(super) fn made_up_tracking() -> String {
    format!("doctor-{:016x}", rand::random::<u64>())
}

pub(super) fn app_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(crate::outbound::USER_AGENT)
        .build()
        .map_err(|e| crate::outbound::describe(&e))
}

/// `scheme://host:port` of `url`, for findings (never its path or query).
pub(super) fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "the URL".into())
}

/// Why a call to the app got no answer: refused, timed out, or otherwise.
pub(super) fn unreachable_why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                kind => format!("{kind}"),
            };
        }
        src = s.source();
    }
    crate::outbound::describe(e)
}

/// The session check with a made-up session: it must deny (401, 403, 404 or a redirect
/// to the login page), not allow, fail or be unreachable.
pub(super) async fn check_session(config: &Config) -> Check {
    let a = &config.auth;
    let mut c = Check {
        name: SESSION_CHECK,
        status: Status::Fail,
        finding: String::new(),
        fix: None,
    };
    let client = match app_client(a.timeout) {
        Ok(client) => client,
        Err(e) => {
            c.finding = format!("no HTTP client: {e}");
            return c;
        }
    };
    let url = a.check_url.replace("{tracking}", &made_up_tracking());
    let cookie = format!(
        "{}=label-gateway-doctor-{:032x}",
        a.cookie_name,
        rand::random::<u128>()
    );
    let origin = origin_of(&url);
    let sent = client
        .get(&url)
        .header(header::COOKIE, cookie)
        .header("x-request-id", "label-gateway-doctor")
        .send()
        .await;
    match sent {
        Err(e) => {
            c.finding = format!("{origin} cannot be reached: {}", unreachable_why(&e));
            c.fix = Some(
                "start the app, or correct auth.check_url (LABEL_GATEWAY_AUTH__CHECK_URL): \
                 until it answers, every label request gets 503"
                    .into(),
            );
        }
        Ok(resp) => {
            let status = resp.status();
            let code = status.as_u16();
            if matches!(code, 401 | 403 | 404) || status.is_redirection() {
                c.status = Status::Ok;
                c.finding = format!("{origin} denies a made-up session ({code})");
            } else if status.is_success() {
                c.finding = format!("{origin} allows a made-up session ({code})");
                c.fix = Some(
                    "auth.check_url must answer 2xx only for a logged-in session: point it at \
                     the shipped label-access view or a login-required page"
                        .into(),
                );
            } else {
                c.finding = format!("{origin} answers {code} to a made-up session");
                c.fix = Some(
                    "the app fails on the check: see its log; until it denies or allows, \
                     every label request gets 503"
                        .into(),
                );
            }
        }
    }
    c
}

/// The regeneration endpoint with a made-up tracking number and the configured token:
/// it must accept the token and say "no such label" (404/410).
pub(super) async fn check_regeneration(config: &Config) -> Check {
    let g = &config.regenerate;
    let mut c = Check {
        name: REGENERATION,
        status: Status::Fail,
        finding: String::new(),
        fix: None,
    };
    if g.url.is_empty() {
        c.status = Status::Skip;
        c.finding = "regenerate.url is empty: missing labels are not regenerated".into();
        return c;
    }
    let client = match app_client(g.timeout) {
        Ok(client) => client,
        Err(e) => {
            c.finding = format!("no HTTP client: {e}");
            return c;
        }
    };
    let url = g.url.replace("{tracking}", &made_up_tracking());
    let origin = origin_of(&url);
    let mut req = client
        .post(&url)
        .header("x-request-id", "label-gateway-doctor");
    if let Some(token) = &g.token {
        req = req.bearer_auth(token.expose());
    }
    let token_var = if config
        .secret_files
        .contains_key("LABEL_GATEWAY_REGENERATE__TOKEN")
    {
        "LABEL_GATEWAY_REGENERATE__TOKEN_FILE"
    } else {
        "LABEL_GATEWAY_REGENERATE__TOKEN"
    };
    match req.send().await {
        Err(e) => {
            c.finding = format!("{origin} cannot be reached: {}", unreachable_why(&e));
            c.fix = Some(
                "start the app, or correct regenerate.url (LABEL_GATEWAY_REGENERATE__URL)".into(),
            );
        }
        Ok(resp) => {
            let code = resp.status().as_u16();
            match code {
                404 | 410 => {
                    c.status = Status::Ok;
                    c.finding = format!(
                        "{origin} accepts the token and has no label for a made-up tracking \
                         number ({code})"
                    );
                }
                401 | 403 if g.token.is_none() => {
                    c.finding = format!("{origin} wants a token ({code}) and none is set");
                    c.fix = Some(format!(
                        "set {token_var} to the app's LABEL_GATEWAY_REGENERATE_TOKEN"
                    ));
                }
                401 | 403 => {
                    c.finding = format!("{origin} refuses the token ({code})");
                    c.fix = Some(format!(
                        "{token_var} must equal the app's LABEL_GATEWAY_REGENERATE_TOKEN"
                    ));
                }
                200..=299 => {
                    c.status = Status::Warn;
                    c.finding =
                        format!("{origin} produced a label for a made-up tracking number ({code})");
                    c.fix = Some(
                        "the app's regeneration function should return None for unknown \
                         tracking numbers"
                            .into(),
                    );
                }
                _ => {
                    c.finding = format!("{origin} answers {code}");
                    c.fix = Some(
                        "see the app's log (the shipped view answers 503 when \
                         LABEL_GATEWAY_REGENERATE or its token is not set)"
                            .into(),
                    );
                }
            }
        }
    }
    c
}
