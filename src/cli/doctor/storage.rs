//! The storage checks: credentials, the signed listing with each S3 refusal mapped to
//! its cause, the clock against the server's `Date`, the local backend's folder.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, StatusCode};

use super::endpoint::reach;
use super::round_trip::{round_trip_s3, scratch_body, scratch_name};
use super::*;
use crate::config::Config;
use crate::storage::s3::{RawAnswer, S3Store};
use crate::storage::StorageError;

pub(super) async fn check_s3(config: &Config, write: bool, r: &mut DoctorReport) {
    let source = |var: &str| match config.secret_files.get(var) {
        Some(path) => format!("{var} from {}", path.display()),
        None => format!("{var} from the environment"),
    };
    r.ok(
        CREDENTIALS,
        format!(
            "{} and {}",
            source("SPACES_ACCESS_KEY_ID"),
            source("SPACES_SECRET_ACCESS_KEY")
        ),
    );
    let store = match S3Store::new(&config.storage) {
        Ok(s) => s,
        Err(e) => {
            r.fail(ENDPOINT, e.to_string(), "check SPACES_ENDPOINT_URL");
            for name in [STORAGE, CLOCK, ROUND_TRIP] {
                r.skip(name, "no storage client");
            }
            return;
        }
    };
    let endpoint = reach(store.bucket_url(), config.storage.connect_timeout).await;
    let reached = endpoint.status == Status::Ok;
    r.add(endpoint);
    if !reached {
        for name in [STORAGE, CLOCK, ROUND_TRIP] {
            r.skip(name, "the endpoint cannot be reached");
        }
        return;
    }
    let listed = store
        .raw(Method::GET, &store.listing_url(1, None), Bytes::new(), &[])
        .await;
    let now = SystemTime::now();
    let prefix = store.prefix();
    let (access, date) = match listed {
        Ok(answer) => (
            access_check(&answer, config, &prefix),
            answer.date().map(|d| (d, now)),
        ),
        Err(e) => (
            storage_fault(&format!("ListObjectsV2 under {prefix}"), &e),
            None,
        ),
    };
    let access_ok = access.status == Status::Ok;
    r.add(access);
    r.add(match date {
        Some((server, local)) => clock_check(local, server),
        None => Check {
            name: CLOCK,
            status: Status::Skip,
            finding: "the storage server sent no Date to compare with".into(),
            fix: None,
        },
    });
    if !write {
        r.skip(
            ROUND_TRIP,
            "pass --write to PUT, HEAD, GET and DELETE a scratch object",
        );
    } else if !access_ok {
        r.skip(ROUND_TRIP, "the signed request failed");
    } else {
        r.add(round_trip_s3(&store).await);
    }
}

pub(super) async fn check_local(config: &Config, write: bool, r: &mut DoctorReport) {
    r.skip(CREDENTIALS, "local backend: no credentials");
    r.skip(ENDPOINT, "local backend");
    let root = &config.storage.local_root;
    let fix = "check storage.local_root and the folder's permissions";
    let readable = match count_entries(root).await {
        Ok(n) => {
            r.ok(
                STORAGE,
                format!("{} is readable ({n} entries)", root.display()),
            );
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.push(
                STORAGE,
                Status::Warn,
                format!(
                    "{} does not exist yet (the gateway creates it at start-up)",
                    root.display()
                ),
            );
            false
        }
        Err(e) => {
            r.fail(STORAGE, format!("cannot list {}: {e}", root.display()), fix);
            false
        }
    };
    r.skip(CLOCK, "local backend");
    if !write {
        r.skip(
            ROUND_TRIP,
            "pass --write to write, read and delete a scratch file",
        );
        return;
    }
    if !readable {
        r.skip(ROUND_TRIP, "the folder cannot be read");
        return;
    }
    // Hidden, and not `{tracking}.pdf`: never listed, backed up or pruned as a label.
    let path = root.join(format!(".{}", scratch_name()));
    let body = scratch_body();
    let steps = async {
        tokio::fs::write(&path, &body).await?;
        let back = tokio::fs::read(&path).await?;
        tokio::fs::remove_file(&path).await?;
        Ok::<bool, std::io::Error>(back == body)
    }
    .await;
    r.add(match steps {
        Ok(true) => Check {
            name: ROUND_TRIP,
            status: Status::Ok,
            finding: format!(
                "wrote, read back ({} bytes compared) and deleted {}",
                body.len(),
                path.display()
            ),
            fix: None,
        },
        other => {
            let _ = tokio::fs::remove_file(&path).await;
            Check {
                name: ROUND_TRIP,
                status: Status::Fail,
                finding: match other {
                    Err(e) => format!("{}: {e}", path.display()),
                    _ => format!("{} read back different bytes", path.display()),
                },
                fix: Some(
                    "the gateway's user must be able to write storage.local_root (ingest and \
                     regeneration store labels there)"
                        .into(),
                ),
            }
        }
    });
}

pub(super) async fn count_entries(root: &Path) -> std::io::Result<usize> {
    let mut dir = tokio::fs::read_dir(root).await?;
    let mut n = 0;
    while dir.next_entry().await?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// The signed listing's answer: 2xx, or the S3 refusal mapped to its cause.
pub(super) fn access_check(answer: &RawAnswer, config: &Config, prefix: &str) -> Check {
    let what = format!("ListObjectsV2 under {prefix}");
    if answer.status.is_success() {
        return Check {
            name: STORAGE,
            status: Status::Ok,
            finding: format!(
                "{what} in bucket {} answered {}",
                config.storage.bucket,
                answer.status.as_u16()
            ),
            fix: None,
        };
    }
    let code = answer.code();
    let (finding, fix) = refusal_cause(answer.status, &code, answer, config);
    Check {
        name: STORAGE,
        status: Status::Fail,
        finding: format!("{what}: {} {code}: {finding}", answer.status.as_u16()),
        fix: Some(fix),
    }
}

/// What an S3 refusal means, and what to change.
pub(super) fn refusal_cause(
    status: StatusCode,
    code: &str,
    answer: &RawAnswer,
    config: &Config,
) -> (String, String) {
    let st = &config.storage;
    let region_hint = answer
        .headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" (the bucket is in {r})"))
        .unwrap_or_default();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    match code {
        // s3s answers an unknown key id with NotSignedUp: the same cause.
        "InvalidAccessKeyId" | "NotSignedUp" => s(
            "the store does not know this key id",
            "check SPACES_ACCESS_KEY_ID: the key may be revoked, mistyped or from another \
             account",
        ),
        "SignatureDoesNotMatch" => s(
            "the key id is known but the signature does not match its secret",
            "check SPACES_SECRET_ACCESS_KEY (a stray character or newline, or the secret of \
             another key)",
        ),
        "RequestTimeTooSkewed" => s(
            "the store refuses this machine's clock",
            "sync this machine's clock (NTP): SigV4 refuses requests 15 minutes off",
        ),
        "AccessDenied" => s(
            "the key is valid but may not list this bucket",
            "give the key access to the bucket (read and write: the gateway also stores \
             labels), or use a key that has it",
        ),
        "NoSuchBucket" => (
            format!("there is no bucket {} at {}", st.bucket, st.endpoint),
            "check SPACES_BUCKET_NAME, and that SPACES_ENDPOINT_URL is the bucket's region".into(),
        ),
        "PermanentRedirect" | "TemporaryRedirect" => (
            format!("the bucket is served by another endpoint{region_hint}"),
            "set SPACES_ENDPOINT_URL and SPACES_REGION to the bucket's region".into(),
        ),
        "AuthorizationHeaderMalformed" | "InvalidRegion" | "IllegalLocationConstraintException" => {
            (
                format!(
                    "the store expects another region than {}{region_hint}",
                    st.region
                ),
                "check SPACES_REGION (Spaces wants its slug, e.g. lon1) and SPACES_ENDPOINT_URL"
                    .into(),
            )
        }
        _ if status.is_redirection() => (
            format!("the store redirects the bucket elsewhere{region_hint}"),
            "set SPACES_ENDPOINT_URL and SPACES_REGION to the bucket's region".into(),
        ),
        _ if status.is_server_error() => s(
            "the store failed",
            "the storage service may be down: try again later, see its status page",
        ),
        _ if status == StatusCode::NOT_FOUND => (
            format!("nothing answers for bucket {} there", st.bucket),
            "check SPACES_BUCKET_NAME, SPACES_ENDPOINT_URL and storage.addressing".into(),
        ),
        _ => s(
            "the store refused the request",
            "check the SPACES_* credentials, the region, the endpoint and the clock",
        ),
    }
}

/// A storage call that got no answer.
pub(super) fn storage_fault(what: &str, e: &StorageError) -> Check {
    let fix = match e {
        StorageError::Timeout(_) => {
            "the store accepts connections but does not answer: check the endpoint, or raise \
             storage.first_byte_timeout"
        }
        _ => "check SPACES_ENDPOINT_URL and the network path to it",
    };
    Check {
        name: STORAGE,
        status: Status::Fail,
        finding: format!("{what}: {e}"),
        fix: Some(fix.into()),
    }
}

/// This machine's clock (`local`, read when the answer came) against the server's `Date`.
pub fn clock_check(local: SystemTime, server: SystemTime) -> Check {
    let (skew, side) = match local.duration_since(server) {
        Ok(d) => (d, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    // `Date` has whole seconds: less than 2 s apart is the same clock.
    let secs = skew.as_secs();
    let finding = if secs < 2 {
        "in step with the storage server's clock".to_string()
    } else {
        format!("{secs} s {side} the storage server's clock")
    };
    let (status, fix) = if skew > SKEW_FAIL {
        (
            Status::Fail,
            Some("sync this machine's clock (NTP); SigV4 refuses requests 15 minutes off".into()),
        )
    } else if skew > SKEW_WARN {
        (
            Status::Warn,
            Some("sync this machine's clock (NTP) before it drifts further".into()),
        )
    } else {
        (Status::Ok, None)
    };
    Check {
        name: CLOCK,
        status,
        finding,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn clock_skew_passes_to_a_minute_warns_to_five_and_fails_past() {
        let server = at(1_800_000_000);
        let c = clock_check(server + Duration::from_millis(900), server);
        assert_eq!(c.status, Status::Ok);
        assert!(c.finding.contains("in step"), "{}", c.finding);
        let c = clock_check(at(1_800_000_000 - 59), server);
        assert_eq!(c.status, Status::Ok);
        assert!(c.finding.contains("59 s behind"), "{}", c.finding);
        let c = clock_check(at(1_800_000_000 + 120), server);
        assert_eq!(c.status, Status::Warn);
        assert!(c.finding.contains("120 s ahead of"), "{}", c.finding);
        let c = clock_check(at(1_800_000_000 - 301), server);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.unwrap().contains("NTP"));
    }

    #[test]
    fn each_s3_refusal_names_its_cause() {
        let config = Config::default();
        let answer = |status: u16, code: &str| RawAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: Bytes::from(format!("<Error><Code>{code}</Code></Error>")),
        };
        for (status, code, fix) in [
            (403, "InvalidAccessKeyId", "SPACES_ACCESS_KEY_ID"),
            (403, "NotSignedUp", "SPACES_ACCESS_KEY_ID"),
            (403, "SignatureDoesNotMatch", "SPACES_SECRET_ACCESS_KEY"),
            (403, "RequestTimeTooSkewed", "clock"),
            (403, "AccessDenied", "access to the bucket"),
            (404, "NoSuchBucket", "SPACES_BUCKET_NAME"),
            (301, "PermanentRedirect", "the bucket's region"),
            (400, "AuthorizationHeaderMalformed", "SPACES_REGION"),
            (503, "SlowDown", "down"),
        ] {
            let c = access_check(&answer(status, code), &config, "labels/");
            assert_eq!(c.status, Status::Fail, "{code}");
            assert!(c.finding.contains(code), "{code}: {}", c.finding);
            let got = c.fix.unwrap();
            assert!(got.contains(fix), "{code}: {got}");
        }
    }
}
