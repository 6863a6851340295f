//! `--write`'s round trip: PUT → HEAD → GET → DELETE of a scratch object that can never
//! be a label.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use super::{Check, Status, ROUND_TRIP};
use crate::storage::s3::{RawAnswer, S3Store};
use crate::storage::StorageError;

/// A name under `{location}/` that can never be a label: labels are `{tracking}.pdf`.
pub(super) fn scratch_name() -> String {
    format!("label-gateway-doctor-{:016x}.probe", rand::random::<u64>())
}

pub(super) fn scratch_body() -> Bytes {
    let mut body = b"label-gateway doctor round trip\n".to_vec();
    body.extend((0..224).map(|_| rand::random::<u8>()));
    Bytes::from(body)
}

/// PUT → HEAD → GET (bytes compared) → DELETE of a scratch object; the object is
/// deleted even when a step in between fails.
pub(super) async fn round_trip_s3(store: &S3Store) -> Check {
    let name = scratch_name();
    let key = format!("{}{name}", store.prefix());
    let url = store.scratch_url(&name);
    let body = scratch_body();
    let steps = async {
        let octets = HeaderValue::from_static("application/octet-stream");
        let put = store
            .raw(
                Method::PUT,
                &url,
                body.clone(),
                &[(header::CONTENT_TYPE, octets)],
            )
            .await;
        expect("PUT", put, |a| a.status.is_success())?;
        let head = store.raw(Method::HEAD, &url, Bytes::new(), &[]).await;
        expect("HEAD", head, |a| {
            a.status == StatusCode::OK
                && a.headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    == Some(body.len().to_string().as_str())
        })?;
        let get = store.raw(Method::GET, &url, Bytes::new(), &[]).await;
        expect("GET", get, |a| a.status == StatusCode::OK && a.body == body)?;
        Ok::<(), String>(())
    }
    .await;
    let delete = store.raw(Method::DELETE, &url, Bytes::new(), &[]).await;
    let deleted = expect("DELETE", delete, |a| a.status.is_success());
    match (steps, deleted) {
        (Ok(()), Ok(())) => Check {
            name: ROUND_TRIP,
            status: Status::Ok,
            finding: format!(
                "PUT, HEAD, GET ({} bytes compared) and DELETE of {key}",
                body.len()
            ),
            fix: None,
        },
        (Err(e), Ok(())) => Check {
            name: ROUND_TRIP,
            status: Status::Fail,
            finding: format!("{key}: {e} (the scratch object was deleted)"),
            fix: Some(round_trip_fix(&e)),
        },
        (steps, Err(e)) => {
            let first = steps.err().unwrap_or_default();
            Check {
                name: ROUND_TRIP,
                status: Status::Fail,
                finding: format!(
                    "{key}: {}{e}; delete {key} by hand if it is there",
                    if first.is_empty() {
                        String::new()
                    } else {
                        format!("{first}; ")
                    }
                ),
                fix: Some(round_trip_fix(&e)),
            }
        }
    }
}

/// One round-trip step's answer: `Ok` when `good` holds, else what came instead.
pub(super) fn expect(
    step: &str,
    answer: Result<RawAnswer, StorageError>,
    good: impl Fn(&RawAnswer) -> bool,
) -> Result<(), String> {
    match answer {
        Ok(a) if good(&a) => Ok(()),
        Ok(a) if a.status.is_success() => Err(format!(
            "{step} answered {} but the object came back different",
            a.status.as_u16()
        )),
        Ok(a) => Err(format!(
            "{step} answered {} {}",
            a.status.as_u16(),
            a.code()
        )),
        Err(e) => Err(format!("{step}: {e}")),
    }
}

pub(super) fn round_trip_fix(why: &str) -> String {
    if why.contains("AccessDenied") {
        "the key may read but not write or delete: the gateway stores ingested and regenerated \
         labels, so give it write access"
            .into()
    } else if why.contains("came back different") {
        "the store returned other bytes than were written: check for a proxy or a \
         transforming CDN between the gateway and the endpoint"
            .into()
    } else {
        "see the step that failed; the credentials, bucket and endpoint passed the listing".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_object_can_never_be_a_label() {
        let name = scratch_name();
        assert!(!name.ends_with(".pdf"), "{name}");
        assert!(crate::tracking::Tracking::parse(&name).is_err());
    }
}
