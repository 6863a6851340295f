//! The session check against the real Django test app: real users, real logins, real
//! logouts. Stand-ins only for what Django will not do on demand (answer 500).

use std::time::Duration;

use crate::support::{self, get_label, pdf_bytes, standins, Django, Responder, S3Server};

async fn gateway_for(
    django_check: &str,
    s3: &S3Server,
    extra: &[(&str, &str)],
) -> label_gateway::server::Running {
    support::start_gateway(support::s3_config(s3, django_check, extra)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn logged_in_session_gets_the_bytes_and_others_get_404() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let data = pdf_bytes(50_000, 21);
    s3.put_label("AUTH1", &data).await;
    let gw = gateway_for(
        &django.check_url(),
        &s3,
        &[("LABEL_GATEWAY_AUTH__DENY_TTL", "1ms")],
    )
    .await;

    let key = django.session("alice");
    let cookie = format!("csrftoken=abc; sessionid={key}; theme=dark");
    let r = get_label(&gw, "AUTH1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = get_label(&gw, "AUTH1").send().await;
    assert_eq!(r.status(), 404);
    let r = get_label(&gw, "AUTH1")
        .cookie("sessionid=forgedforgedforgedforgedforged12")
        .send()
        .await;
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("AUTH1"),
        "a denied 404 must not reveal the label: {body}"
    );
    let r = get_label(&gw, "AUTH1").cookie("sessionid=").send().await;
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn logged_out_session_is_refused_once_its_verdict_expires() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("AUTH2", &pdf_bytes(1000, 22)).await;
    let gw = gateway_for(
        &django.check_url(),
        &s3,
        &[("LABEL_GATEWAY_AUTH__ALLOW_TTL", "200ms")],
    )
    .await;
    let cookie = format!("sessionid={}", django.session("bob"));
    let r = get_label(&gw, "AUTH2").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    django.logout(&cookie).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = get_label(&gw, "AUTH2").cookie(&cookie).send().await;
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_session_cookie_reaches_the_app_and_verdicts_are_cached() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    s3.put_label("AUTH3", &pdf_bytes(1000, 23)).await;
    let gw = gateway_for(&django.check_url(), &s3, &[]).await;
    let cookie = format!("sessionid={}; other=1", django.session("carol"));
    django.reset_stats().await;
    for _ in 0..5 {
        let r = get_label(&gw, "AUTH3").cookie(&cookie).send().await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        django.access_calls().await,
        1,
        "allow verdict reused for allow_ttl"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_deny_redirect_sends_302_to_login_with_next() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let gw = gateway_for(
        &django.check_url(),
        &s3,
        &[("LABEL_GATEWAY_AUTH__ON_DENY", "redirect")],
    )
    .await;
    let r = get_label(&gw, "AUTH4").query("copy=2").send().await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/accounts/login/?next=/shipping-label/AUTH4/%3Fcopy%3D2"
    );
}

/// The Django app answers 503 when its ownership hook fails: "cannot say now", so the
/// gateway tells the caller to retry and caches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn check_answering_503_is_unavailable_and_never_cached() {
    let s3 = S3Server::start().await;
    s3.put_label("AUTH503", &pdf_bytes(1000, 25)).await;
    let app = Responder::start(503, Duration::ZERO).await;
    let gw = gateway_for(&app.url(), &s3, &[]).await;
    for _ in 0..2 {
        let r = get_label(&gw, "AUTH503")
            .cookie("sessionid=abc")
            .send()
            .await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
    }
    assert_eq!(app.hits(), 2, "a 503 from the check is never cached");
    assert_eq!(s3.gets(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn app_down_or_failing_is_503_with_retry_after_and_no_bytes() {
    let s3 = S3Server::start().await;
    s3.put_label("AUTH5", &pdf_bytes(1000, 24)).await;

    let down = standins::closed_port().await;
    let gw = gateway_for(&format!("http://{down}/check/{{tracking}}/"), &s3, &[]).await;
    let r = get_label(&gw, "AUTH5").cookie("sessionid=abc").send().await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(!r.bytes().await.unwrap().starts_with(b"%PDF"));

    let failing = Responder::start(500, Duration::ZERO).await;
    let gw = gateway_for(&failing.url(), &s3, &[]).await;
    for _ in 0..2 {
        let r = get_label(&gw, "AUTH5").cookie("sessionid=abc").send().await;
        assert_eq!(r.status(), 503);
        assert!(!r.bytes().await.unwrap().starts_with(b"%PDF"));
    }
    assert_eq!(failing.hits(), 2, "an unavailable verdict is never cached");
    assert_eq!(
        s3.gets(),
        0,
        "storage is never asked without an allow verdict"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_requests_with_one_new_session_make_one_app_call() {
    let django = Django::start();
    let s3 = S3Server::start().await;
    let data = pdf_bytes(10_000, 25);
    s3.put_label("AUTH6", &data).await;
    let gw = gateway_for(&django.check_url(), &s3, &[]).await;
    let cookie = format!("sessionid={}", django.session("dave"));
    django.reset_stats().await;
    let client = support::client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let request = get_label(&gw, "AUTH6").cookie(&cookie).with_client(&client);
        tasks.push(tokio::spawn(async move {
            let r = request.send().await;
            (r.status().as_u16(), r.bytes().await.unwrap().len())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, 10_000));
    }
    assert_eq!(django.access_calls().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_session_cookie_name_is_honoured() {
    let django = Django::start_with(&[("DJANGO_SESSION_COOKIE_NAME", "shop_session")]);
    let s3 = S3Server::start().await;
    s3.put_label("AUTH7", &pdf_bytes(500, 26)).await;
    let gw = gateway_for(
        &django.check_url(),
        &s3,
        &[("LABEL_GATEWAY_AUTH__COOKIE_NAME", "shop_session")],
    )
    .await;
    let key = django.session("erin");
    let r = get_label(&gw, "AUTH7").cookie(&format!("shop_session={key}"));
    assert_eq!(r.send().await.status(), 200);
    let r = get_label(&gw, "AUTH7").cookie(&format!("sessionid={key}"));
    assert_eq!(r.send().await.status(), 404);
}
