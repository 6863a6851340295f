//! The local folder backend (the shipped default): same semantics as S3, from disk.

use crate::support::{self, get_label, pdf_bytes, Responder, ANY_SESSION};

#[tokio::test(flavor = "multi_thread")]
async fn local_folder_serves_labels_with_ranges_and_404() {
    let dir = tempfile::tempdir().unwrap();
    let data = pdf_bytes(70_000, 9);
    std::fs::write(dir.path().join("LOCAL1.pdf"), &data).unwrap();
    let check = Responder::allow_all().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n[storage]\nbackend = \"local\"\nlocal_root = \"{}\"\n\
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
    let get = |tracking: &str, headers: &[(&str, &str)]| {
        get_label(&gw, tracking)
            .cookie(ANY_SESSION)
            .headers(headers)
            .with_client(&c)
            .send()
    };
    let r = get("LOCAL1", &[]).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = get("LOCAL1", &[("range", "bytes=-10")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 69990-69999/70000");
    assert_eq!(r.bytes().await.unwrap(), &data[69_990..]);

    let r = get("LOCAL1", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);

    let r = get("LOCAL1", &[("range", "bytes=70000-")]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */70000");

    let r = get("NOTHERE", &[]).await;
    assert_eq!(r.status(), 404);
}
