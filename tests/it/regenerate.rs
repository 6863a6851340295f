//! Missing labels regenerate themselves: the real Django test app's regenerate view (its
//! `testproject.labels.regenerate` returns a PDF for `REGEN*`, nothing for others, sleeps
//! for `SLOW*`, raises for `FAIL*`), the real S3 server storing the result.

use std::time::Duration;

use crate::support::{self, get_label, Django, Responder, S3Server};

const TOKEN: &str = "test-regenerate-token";

async fn gateway(
    django: &Django,
    s3: &S3Server,
    extra: &[(&str, &str)],
) -> label_gateway::server::Running {
    let url = django.url("/internal/label-regenerate/{tracking}/");
    let mut env = vec![
        ("LABEL_GATEWAY_REGENERATE__URL", url.as_str()),
        ("LABEL_GATEWAY_REGENERATE__TOKEN", TOKEN),
    ];
    env.extend_from_slice(extra);
    support::start_gateway(support::s3_config(s3, &django.check_url(), &env)).await
}

async fn wait_stored(s3: &S3Server, key: &str) -> Option<Vec<u8>> {
    for _ in 0..100 {
        if let Some(b) = s3.stored(key) {
            return Some(b);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_label_is_regenerated_served_and_stored() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let gw = gateway(&django, &s3, &[]).await;
    let cookie = format!("sessionid={}", django.session("gina"));
    django.reset_stats().await;

    let r = get_label(&gw, "REGEN001").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with(b"%PDF-"));
    assert!(
        body.windows(8).any(|w| w == b"REGEN001"),
        "the PDF names its tracking number"
    );

    let stored = wait_stored(&s3, "labels/REGEN001.pdf")
        .await
        .expect("uploaded to the bucket");
    assert_eq!(stored, body.to_vec());

    let r = get_label(&gw, "REGEN001").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), body);
    assert_eq!(
        django.regenerate_calls().await,
        1,
        "the next request did not call the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_requests_for_a_missing_label_regenerate_once() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let gw = gateway(&django, &s3, &[]).await;
    let cookie = format!("sessionid={}", django.session("hank"));
    django.reset_stats().await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let request = get_label(&gw, "REGEN050").cookie(&cookie);
            tokio::spawn(async move {
                let r = request.send().await;
                (r.status().as_u16(), r.bytes().await.unwrap())
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(django.regenerate_calls().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn app_without_a_label_gives_the_tracking_link_and_is_not_asked_again_soon() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let gw = gateway(&django, &s3, &[]).await;
    let cookie = format!("sessionid={}", django.session("ivan"));
    django.reset_stats().await;
    for _ in 0..3 {
        let r = get_label(&gw, "GONE42").cookie(&cookie).send().await;
        assert_eq!(r.status(), 404);
        let page = r.text().await.unwrap();
        assert!(page.contains("GONE42"), "{page}");
        assert!(
            page.contains("https://tracking.example.com/track?number=GONE42"),
            "{page}"
        );
    }
    assert_eq!(
        django.regenerate_calls().await,
        1,
        "remembered for negative_ttl"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn app_timing_out_or_failing_is_503_and_nothing_is_stored() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let gw = gateway(&django, &s3, &[("LABEL_GATEWAY_REGENERATE__TIMEOUT", "1s")]).await;
    let cookie = format!("sessionid={}", django.session("judy"));
    for tracking in ["SLOW1", "FAIL1"] {
        let r = get_label(&gw, tracking).cookie(&cookie).send().await;
        assert_eq!(r.status(), 503, "{tracking}");
        assert!(r.headers().contains_key("retry-after"));
        assert!(s3.stored(&format!("labels/{tracking}.pdf")).is_none());
    }
    // A plain 500 from the endpoint, and failures are not remembered.
    let failing = Responder::start(500, Duration::ZERO).await;
    let url = format!("http://{}/regen/{{tracking}}/", failing.addr);
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[("LABEL_GATEWAY_REGENERATE__URL", url.as_str())],
    ))
    .await;
    for _ in 0..2 {
        let r = get_label(&gw, "REGEN500").cookie(&cookie).send().await;
        assert_eq!(r.status(), 503);
    }
    assert_eq!(failing.hits(), 2);
    assert!(s3.stored("labels/REGEN500.pdf").is_none());
}
