//! The local folder backend (the shipped default): same semantics as S3, from disk.

use crate::support::{self, label_url, pdf_bytes, Responder};

#[tokio::test(flavor = "multi_thread")]
async fn local_folder_serves_labels_with_ranges_and_404() {
    let dir = tempfile::tempdir().unwrap();
    let data = pdf_bytes(70_000, 9);
    std::fs::write(dir.path().join("LOCAL1.pdf"), &data).unwrap();
    let check = Responder::allow_all().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"local\"\nlocal_root = \"{}\"\n\
         [auth]\ncheck_url = \"{}\"\n[log]\naccess_log = false\n",
        dir.path().display(),
        check.url()
    );
    let gw = support::start_gateway(support::config(
        &toml,
        &[("LABEL_GATEWAY_REGENERATE__URL", "")],
    ))
    .await;
    let c = support::client();
    let r = c
        .get(label_url(&gw, "LOCAL1"))
        .header("cookie", "sessionid=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = c
        .get(label_url(&gw, "LOCAL1"))
        .header("cookie", "sessionid=x")
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 69990-69999/70000");
    assert_eq!(r.bytes().await.unwrap(), &data[69_990..]);

    let r = c
        .get(label_url(&gw, "LOCAL1"))
        .header("cookie", "sessionid=x")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = c
        .get(label_url(&gw, "LOCAL1"))
        .header("cookie", "sessionid=x")
        .header("range", "bytes=70000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */70000");

    let r = c
        .get(label_url(&gw, "NOTHERE"))
        .header("cookie", "sessionid=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
