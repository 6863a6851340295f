//! Many objects at once: `ListObjectsV2` pages under the location, and Multi-Object
//! Delete (its request document and its answer).

use std::collections::HashMap;

use bytes::Bytes;
use http::header;
use http::{Method, Request};

use super::errors::{error_code, unexpected};
use super::transport::read_body;
use super::S3Store;
use crate::http::{empty, full};
use crate::storage::sigv4::Payload;
use crate::storage::{Listed, StorageError, MAX_DELETE_BATCH};
use crate::tracking::Tracking;

impl S3Store {
    /// The `ListObjectsV2` URL of one page under `{location}/`.
    pub fn listing_url(&self, max_keys: u32, after: Option<&str>) -> String {
        let enc = |v: &str| {
            percent_encoding::utf8_percent_encode(v, crate::storage::sigv4::QUERY).to_string()
        };
        let mut url = format!(
            "{}?list-type=2&max-keys={max_keys}&prefix={}",
            self.list_url,
            enc(&self.prefix())
        );
        if let Some(token) = after {
            url.push_str("&continuation-token=");
            url.push_str(&enc(token));
        }
        url
    }

    /// One page of `ListObjectsV2` under `{location}/`, at most `max_keys` objects;
    /// `after` is the previous page's continuation token.
    pub async fn list(
        &self,
        after: Option<&str>,
        max_keys: u32,
    ) -> Result<(Vec<Listed>, Option<String>), StorageError> {
        let prefix = self.prefix();
        let url = self.listing_url(max_keys, after);
        let resp = self
            .send_with_retries(|| {
                Request::builder()
                    .method(Method::GET)
                    .uri(&url)
                    .header(header::HOST, self.host.clone())
                    .body(empty())
            })
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(unexpected(status, error_code(resp).await));
        }
        let xml = read_body(resp.into_body(), LIST_BODY_LIMIT)
            .await
            .map_err(|e| StorageError::Protocol(format!("bucket listing: {e}")))?;
        parse_listing(&xml, &prefix)
    }

    /// Deletes up to [`MAX_DELETE_BATCH`] labels with one S3 Multi-Object Delete
    /// (`POST ?delete`, `Content-MD5` as S3 requires). Keys are built from the tracking
    /// numbers only, so nothing outside `{location}/` can be named. Returns the labels the
    /// store could not delete, with its reason; a key that was already gone counts as
    /// deleted, as S3 says.
    pub async fn delete_many(
        &self,
        labels: &[Tracking],
    ) -> Result<Vec<(Tracking, String)>, StorageError> {
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        if labels.len() > MAX_DELETE_BATCH {
            return Err(StorageError::Protocol(format!(
                "at most {MAX_DELETE_BATCH} keys per delete, not {}",
                labels.len()
            )));
        }
        let keys: HashMap<String, Tracking> = labels.iter().map(|t| (self.key(t), *t)).collect();
        let xml = delete_request_xml(labels.iter().map(|t| self.key(t)));
        let md5 = content_md5(xml.as_bytes());
        let url = format!("{}?delete", self.list_url);
        let resp = self
            .send_signed_with_retries(
                || {
                    Request::builder()
                        .method(Method::POST)
                        .uri(&url)
                        .header(header::HOST, self.host.clone())
                        .header(header::CONTENT_TYPE, "application/xml")
                        .header(header::CONTENT_LENGTH, xml.len())
                        .header("content-md5", md5.as_str())
                        .body(full(Bytes::from(xml.clone())))
                },
                Payload::Bytes(xml.as_bytes()),
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(unexpected(status, error_code(resp).await));
        }
        let answer = read_body(resp.into_body(), LIST_BODY_LIMIT)
            .await
            .map_err(|e| StorageError::Protocol(format!("delete answer: {e}")))?;
        let failed = parse_delete_errors(&answer)?
            .into_iter()
            .filter_map(|(key, why)| keys.get(&key).map(|t| (*t, why)))
            .collect();
        Ok(failed)
    }
}

/// The largest bucket listing page read (1,000 keys take about 300 KB).
pub(super) const LIST_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// `Content-MD5`: the base64 of the body's MD5, which S3 requires on a Multi-Object Delete.
pub fn content_md5(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// The `<Delete>` document of a Multi-Object Delete: quiet, so only failures come back.
fn delete_request_xml(keys: impl Iterator<Item = String>) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
    );
    for key in keys {
        xml.push_str("<Object><Key>");
        xml.push_str(&quick_xml::escape::escape(key.as_str()));
        xml.push_str("</Key></Object>");
    }
    xml.push_str("</Delete>");
    xml
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteResult {
    #[serde(default)]
    error: Vec<DeleteError>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteError {
    key: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The keys a `DeleteResult` reports as not deleted, each with `Code: Message`.
fn parse_delete_errors(xml: &[u8]) -> Result<Vec<(String, String)>, StorageError> {
    let result: DeleteResult = quick_xml::de::from_reader(xml)
        .map_err(|e| StorageError::Protocol(format!("delete answer is not valid: {e}")))?;
    Ok(result
        .error
        .into_iter()
        .map(|e| {
            let why = match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code,
                (true, false) => e.message,
                (true, true) => "not deleted".to_string(),
            };
            (e.key, why)
        })
        .collect())
}

/// The parts of a `ListObjectsV2` answer the listing needs; the rest is ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    contents: Vec<ListContents>,
    next_continuation_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListContents {
    key: String,
    size: u64,
    last_modified: Option<String>,
    #[serde(default)]
    e_tag: Option<String>,
}

/// The objects of one `ListObjectsV2` page, and the next page's token when it says it
/// is truncated. A key is a label when it is `{prefix}{tracking}.pdf`.
fn parse_listing(xml: &[u8], prefix: &str) -> Result<(Vec<Listed>, Option<String>), StorageError> {
    let page: ListBucketResult = quick_xml::de::from_reader(xml)
        .map_err(|e| StorageError::Protocol(format!("bucket listing is not valid: {e}")))?;
    let objects = page
        .contents
        .into_iter()
        .map(|c| Listed {
            tracking: c
                .key
                .strip_prefix(prefix)
                .and_then(|name| name.strip_suffix(".pdf"))
                .and_then(|t| Tracking::parse(t).ok()),
            key: c.key,
            etag: c.e_tag,
            size: c.size,
            last_modified: c
                .last_modified
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim()).ok()),
        })
        .collect();
    let next = page
        .next_continuation_token
        .filter(|t| page.is_truncated && !t.is_empty());
    Ok((objects, next))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn listing_keeps_labels_names_the_rest_and_follows_truncation() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>shipping-labels</Name><Prefix>labels/</Prefix><KeyCount>3</KeyCount>
  <MaxKeys>3</MaxKeys><IsTruncated>true</IsTruncated>
  <Contents><Key>labels/1Z999AA10123456784.pdf</Key><LastModified>2026-11-01T10:00:00.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>51200</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>labels/a&amp;b.pdf</Key><Size>10</Size></Contents>
  <Contents><Key>labels/nested/X1.pdf</Key><Size>11</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let (objects, next) = parse_listing(xml, "labels/").unwrap();
        assert_eq!(
            objects,
            vec![
                Listed {
                    key: "labels/1Z999AA10123456784.pdf".into(),
                    etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
                    tracking: Tracking::parse("1Z999AA10123456784").ok(),
                    size: 51200,
                    last_modified: Some(
                        SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_527_200)
                    ),
                },
                Listed {
                    key: "labels/a&b.pdf".into(),
                    etag: None,
                    tracking: None,
                    size: 10,
                    last_modified: None,
                },
                Listed {
                    key: "labels/nested/X1.pdf".into(),
                    etag: None,
                    tracking: None,
                    size: 11,
                    last_modified: None,
                },
            ]
        );
        assert_eq!(
            next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        let last = br#"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(parse_listing(last, "labels/").unwrap(), (Vec::new(), None));
        assert!(parse_listing(b"<html>oops", "labels/").is_err());
    }

    #[test]
    fn content_md5_is_the_base64_of_the_md5() {
        // RFC 1321's test suite: MD5("") and MD5("abc"), then base64 as Content-MD5 wants.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn delete_request_names_each_key_escaped_and_asks_for_quiet() {
        let xml = delete_request_xml(
            ["labels/A1.pdf".to_string(), "l&<b>/B2.pdf".to_string()].into_iter(),
        );
        assert!(xml.contains("<Quiet>true</Quiet>"), "{xml}");
        assert!(
            xml.contains("<Object><Key>labels/A1.pdf</Key></Object>"),
            "{xml}"
        );
        assert!(xml.contains("<Key>l&amp;&lt;b&gt;/B2.pdf</Key>"), "{xml}");
    }

    #[test]
    fn delete_answer_gives_each_failed_key_with_its_reason() {
        // The shape of the AWS documentation's DeleteObjects example answer.
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>labels/A1.pdf</Key></Deleted>
  <Error><Key>labels/B2.pdf</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
  <Error><Key>labels/C3.pdf</Key><Code>InternalError</Code></Error>
</DeleteResult>"#;
        assert_eq!(
            parse_delete_errors(xml).unwrap(),
            vec![
                (
                    "labels/B2.pdf".to_string(),
                    "AccessDenied: Access Denied".to_string()
                ),
                ("labels/C3.pdf".to_string(), "InternalError".to_string()),
            ]
        );
        assert_eq!(parse_delete_errors(b"<DeleteResult/>").unwrap(), vec![]);
        assert!(parse_delete_errors(b"<html>").is_err());
    }
}
