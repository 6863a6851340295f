//! What a batch request asks for: the list of tracking numbers (query, form or JSON body;
//! each validated, repeats dropped, bounded by `batch.max_labels`), `partial`, and whether
//! a refusal should be JSON.

use std::collections::HashSet;

use http::header;
use http::request::Parts;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::BatchConfig;
use crate::error::GatewayError;
use crate::tracking::Tracking;

/// What the client asked for: distinct labels in the order given, and `partial`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Asked {
    pub(super) labels: Vec<Tracking>,
    pub(super) partial: bool,
}

/// Whether the client asked for JSON rather than a page: `application/json` in `Accept`,
/// before any `text/html`.
pub(super) fn wants_json(parts: &Parts) -> bool {
    let accept = parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    match (accept.find("application/json"), accept.find("text/html")) {
        (Some(json), Some(html)) => json < html,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Reads the list: `t=` (repeated or comma-separated) and `partial=` from the query, and
/// for a POST also from a form body or JSON `{"tracking": [...], "partial": true}`. Every
/// tracking number is validated here, before any session check or storage call.
pub(super) async fn read_asked(
    parts: &Parts,
    body: Incoming,
    cfg: &BatchConfig,
) -> Result<Asked, GatewayError> {
    let mut list = List::new(cfg.max_labels);
    if let Some(query) = parts.uri.query() {
        list.form(query.as_bytes())?;
    }
    if parts.method == Method::POST {
        // Each label is at most 64 characters plus its field's punctuation.
        let limit = cfg.max_labels * 96 + 4096;
        let raw = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    GatewayError::PayloadTooLarge(format!(
                        "batch request body larger than {limit} bytes"
                    ))
                } else {
                    GatewayError::BadRequest(format!("request body: {e}"))
                }
            })?
            .to_bytes();
        if !raw.is_empty() {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .unwrap_or_default();
            match content_type.as_str() {
                "application/x-www-form-urlencoded" => list.form(&raw)?,
                "application/json" => list.json(&raw)?,
                _ => {
                    return Err(GatewayError::UnsupportedMediaType(
                        "send the list as a form (t=...&t=...) or as JSON {\"tracking\": [...]}"
                            .into(),
                    ))
                }
            }
        }
    }
    if list.asked.labels.is_empty() {
        return Err(GatewayError::BadRequest(
            "no tracking numbers: give t=... (repeated or comma-separated)".into(),
        ));
    }
    Ok(list.asked)
}

/// The list being read: distinct labels in first-seen order, bounded.
struct List {
    asked: Asked,
    seen: HashSet<Tracking>,
    max: usize,
}

impl List {
    fn new(max: usize) -> List {
        List {
            asked: Asked::default(),
            seen: HashSet::new(),
            max,
        }
    }

    fn push(&mut self, raw: &str) -> Result<(), GatewayError> {
        let t = Tracking::parse(raw).map_err(|_| {
            let shown: String = raw.chars().take(80).collect();
            GatewayError::BadRequest(format!(
                "invalid tracking number {shown:?}: must be 1-64 characters of A-Z a-z 0-9 _ -"
            ))
        })?;
        if self.seen.insert(t) {
            if self.asked.labels.len() == self.max {
                return Err(GatewayError::PayloadTooLarge(format!(
                    "more than {} labels in one batch (batch.max_labels)",
                    self.max
                )));
            }
            self.asked.labels.push(t);
        }
        Ok(())
    }

    fn form(&mut self, raw: &[u8]) -> Result<(), GatewayError> {
        for (key, value) in url::form_urlencoded::parse(raw) {
            match &*key {
                "t" => {
                    for piece in value.split(',') {
                        self.push(piece)?;
                    }
                }
                "partial" => self.asked.partial = flag(&value)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn json(&mut self, raw: &[u8]) -> Result<(), GatewayError> {
        #[derive(serde::Deserialize)]
        struct Body {
            tracking: Vec<String>,
            #[serde(default)]
            partial: Option<bool>,
        }
        let body: Body = serde_json::from_slice(raw).map_err(|_| {
            GatewayError::BadRequest(
                "expected JSON {\"tracking\": [\"1Z...\", ...]} (and optionally \"partial\": true)"
                    .into(),
            )
        })?;
        for t in &body.tracking {
            self.push(t)?;
        }
        if let Some(partial) = body.partial {
            self.asked.partial = partial;
        }
        Ok(())
    }
}

fn flag(v: &str) -> Result<bool, GatewayError> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(GatewayError::BadRequest("partial must be 1 or 0".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tracking {
        Tracking::parse(s).unwrap()
    }

    fn form(max: usize, raw: &str) -> Result<Asked, GatewayError> {
        let mut list = List::new(max);
        list.form(raw.as_bytes())?;
        Ok(list.asked)
    }

    #[test]
    fn repeated_and_comma_separated_lists_keep_the_first_place_of_each() {
        let asked = form(10, "t=B&t=A,C&x=1&t=B,D&partial=1").unwrap();
        assert_eq!(asked.labels, vec![t("B"), t("A"), t("C"), t("D")]);
        assert!(asked.partial);
        let asked = form(10, "t=A%2CB").unwrap();
        assert_eq!(
            asked.labels,
            vec![t("A"), t("B")],
            "an encoded comma splits too"
        );
    }

    #[test]
    fn the_first_bad_tracking_number_is_named() {
        let e = form(10, "t=OK1&t=bad.one&t=also%2Fbad").unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("\"bad.one\""), "{e}");
        let e = form(10, "t=A,,B").unwrap_err();
        assert!(e.to_string().contains("\"\""), "{e}");
        let e = form(10, "t=A&partial=maybe").unwrap_err();
        assert!(e.to_string().contains("partial"), "{e}");
    }

    #[test]
    fn more_distinct_labels_than_the_limit_is_413_naming_it() {
        assert!(form(3, "t=A,B,C,A,B,C").is_ok(), "repeats do not count");
        let e = form(3, "t=A,B,C,D").unwrap_err();
        assert_eq!(e.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.to_string().contains("more than 3 labels"), "{e}");
    }

    #[test]
    fn json_lists_are_read_like_forms() {
        let mut list = List::new(10);
        list.json(br#"{"tracking": ["A", "B", "A"], "partial": true}"#)
            .unwrap();
        assert_eq!(list.asked.labels, vec![t("A"), t("B")]);
        assert!(list.asked.partial);
        let mut list = List::new(10);
        assert!(list.json(br#"{"tracking": "A"}"#).is_err());
        assert!(list.json(br#"{"tracking": ["A/B"]}"#).is_err());
    }
}
