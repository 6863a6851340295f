//! Labels on shared warehouse terminals: a browser revalidates every label (so logout is
//! felt at once), a refused browser is shown the way in, and logging out through Django's
//! own logout view drops the gateway's cached verdicts for that session immediately.

use crate::support::{self, get_label, head_label, pdf_bytes, Django, Responder, S3Server};

#[tokio::test(flavor = "multi_thread")]
async fn labels_are_revalidated_every_time_hit_miss_range_and_304_alike() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    s3.put_label("REVAL1", &pdf_bytes(4_000, 90)).await;
    let gw = support::start_gateway(support::s3_config(&s3, &check.url(), &[])).await;
    let miss = get_label(&gw, "REVAL1")
        .cookie(support::ANY_SESSION)
        .send()
        .await;
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let etag = miss.headers()["etag"].to_str().unwrap().to_string();
    let mut seen = vec![("miss", miss.status().as_u16(), miss.headers().clone())];
    let hit = get_label(&gw, "REVAL1")
        .cookie(support::ANY_SESSION)
        .send()
        .await;
    assert_eq!(hit.headers()["x-cache"], "HIT");
    seen.push(("hit", hit.status().as_u16(), hit.headers().clone()));
    let range = get_label(&gw, "REVAL1")
        .cookie(support::ANY_SESSION)
        .header("range", "bytes=0-9")
        .send()
        .await;
    seen.push(("range", range.status().as_u16(), range.headers().clone()));
    let revalidate = get_label(&gw, "REVAL1")
        .cookie(support::ANY_SESSION)
        .header("if-none-match", &etag)
        .send()
        .await;
    seen.push((
        "304",
        revalidate.status().as_u16(),
        revalidate.headers().clone(),
    ));
    let head = head_label(&gw, "REVAL1")
        .cookie(support::ANY_SESSION)
        .send()
        .await;
    seen.push(("head", head.status().as_u16(), head.headers().clone()));
    let statuses: Vec<u16> = seen.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 206, 304, 200]);
    for (what, _, h) in &seen {
        assert_eq!(h["cache-control"], "private, no-cache", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_browser_gets_a_login_page_that_says_nothing_about_the_label() {
    let s3 = S3Server::start().await;
    let deny = Responder::start(403, std::time::Duration::ZERO).await;
    s3.put_label("EXISTS1", &pdf_bytes(2_000, 91)).await;
    let gw = support::start_gateway(support::s3_config(&s3, &deny.url(), &[])).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = |tracking: &'static str, cookie: Option<&'static str>, accept: &'static str| {
        let gw = &gw;
        async move {
            let mut r = get_label(gw, tracking).header("accept", accept);
            if let Some(c) = cookie {
                r = r.cookie(c);
            }
            let r = r.send().await;
            let h = r.headers().clone();
            (r.status().as_u16(), h, r.text().await.unwrap())
        }
    };
    // An existing label and a missing one, with a refused session and with none.
    let (status, h, exists) = page("EXISTS1", Some("sessionid=refused"), browser).await;
    assert_eq!(status, 404);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        exists.contains("href=\"/accounts/login/?next=/shipping-label/EXISTS1/\""),
        "{exists}"
    );
    assert!(exists.contains("Label not available"), "{exists}");
    let (_, _, missing) = page("EXISTS1", None, browser).await;
    assert_eq!(missing, exists, "with or without a cookie, the same page");
    let (status, _, other) = page("NOSUCH1", Some("sessionid=refused"), browser).await;
    assert_eq!(status, 404);
    assert_eq!(
        other,
        exists.replace("EXISTS1", "NOSUCH1"),
        "an existing and a missing label are refused byte for byte alike"
    );
    // A printer or a script keeps the plain answer.
    let (status, h, plain) = page("EXISTS1", Some("sessionid=refused"), "*/*").await;
    assert_eq!(status, 404);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(plain, "404 Not Found: not found\n");
}

/// Log in for real, print a label, log out through Django's own logout view (a form POST
/// with its CSRF token, as the landing page's button sends it): the same cookie is refused
/// at once, although its allow verdict was cached for an hour.
#[tokio::test(flavor = "multi_thread")]
async fn logging_out_in_django_revokes_the_cached_verdict_at_once() {
    let token = "revoke-token-17";
    let internal_port = support::port_to_bind_later();
    let internal_url = format!("http://127.0.0.1:{internal_port}");
    let django = Django::start_with(&[
        ("LABEL_GATEWAY_TEST_INTERNAL_URLS", internal_url.as_str()),
        ("LABEL_GATEWAY_TEST_INTERNAL_TOKEN", token),
    ]);
    let s3 = S3Server::start().await;
    let data = pdf_bytes(3_000, 92);
    s3.put_label("LOGOUT1", &data).await;
    let internal_listen = format!("127.0.0.1:{internal_port}");
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_AUTH__ALLOW_TTL", "5m"),
            ("LABEL_GATEWAY_INTERNAL__TOKEN", token),
            (
                "LABEL_GATEWAY_SERVER__INTERNAL_LISTEN",
                internal_listen.as_str(),
            ),
        ],
    ))
    .await;
    let session = django.session("packer");
    let cookie = format!("sessionid={session}");
    let r = get_label(&gw, "LOGOUT1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);

    // The landing page carries the logout form and sets the CSRF cookie.
    let c = support::client();
    let home = c
        .get(django.url("/test/home/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    let csrf_cookie = home
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("csrftoken="))
        .and_then(|v| v.split(';').next())
        .expect("csrftoken cookie")
        .to_string();
    let html = home.text().await.unwrap();
    let form_token = html
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf form field")
        .to_string();
    let out = c
        .post(django.url("/accounts/logout/"))
        .header("cookie", format!("{cookie}; csrftoken={csrf_cookie}"))
        .form(&[("csrfmiddlewaretoken", form_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 302, "{:?}", out.text().await);

    let r = get_label(&gw, "LOGOUT1").cookie(&cookie).send().await;
    assert_eq!(r.status(), 404, "a logged-out session is refused at once");
    let metrics = support::metrics(gw.internal_addr()).await;
    // Two revokes for the one logout: the app sends one when Django announces the logout
    // and one more once the session's deletion has committed (a check that read the
    // session in between cannot leave an allow verdict cached).
    assert!(
        metrics.contains("label_gateway_auth_revocations_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_needs_the_token_and_a_session_key() {
    let s3 = S3Server::start().await;
    let check = Responder::allow_all().await;
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &check.url(),
        &[("LABEL_GATEWAY_INTERNAL__TOKEN", "tok-17")],
    ))
    .await;
    let url = format!("http://{}/internal/sessions/revoke", gw.internal_addr());
    let c = support::client();
    let send = |token: &'static str, body: &'static str| {
        c.post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        send("wrong", r#"{"session_key":"abc"}"#)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(send("tok-17", r#"{"nope":1}"#).await.unwrap().status(), 400);
    assert_eq!(
        send("tok-17", r#"{"session_key":""}"#)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        send("tok-17", r#"{"session_key":"abc"}"#)
            .await
            .unwrap()
            .status(),
        204
    );
    let r = c.get(&url).bearer_auth("tok-17").send().await.unwrap();
    assert_eq!(r.status(), 405);
}
