//! A real browser at a shared packing station: Debian's Chromium (headless, driven by its
//! own chromedriver through selenium; nothing downloaded) against the shipped nginx config
//! in front of the gateway and the real Django test app. Log in with the login form, open
//! the demo label from the landing page (a PDF), log out with the page's button, then open
//! the label again by navigation and by Back: it is not shown. `tests/run.sh` installs
//! `chromium`, `chromium-driver` and selenium; a missing browser fails the test.

use std::net::SocketAddr;
use std::path::Path;

use crate::support::nginx::{Nginx, Upstream};
use crate::support::{self, django, pdf_bytes, Django, S3Server};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/logout_check.py");

#[tokio::test(flavor = "multi_thread")]
async fn after_logout_a_browser_shows_the_label_neither_by_navigation_nor_by_back() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash tests/run.sh`, which installs chromium and \
             chromium-driver"
        );
    }
    let token = "browser-token-17";
    // Django must know the gateway's internal listener before either starts.
    let internal = SocketAddr::from(([127, 0, 0, 1], support::port_to_bind_later()));
    let internal_url = format!("http://{internal}");
    let django = Django::start_with(&[
        ("LABEL_GATEWAY_TEST_INTERNAL_URLS", internal_url.as_str()),
        ("LABEL_GATEWAY_TEST_INTERNAL_TOKEN", token),
    ]);
    let s3 = S3Server::start().await;
    s3.put_label("DEMO123", &pdf_bytes(20_000, 120)).await;
    let internal_s = internal.to_string();
    let gw = support::start_gateway(support::s3_config(
        &s3,
        &django.check_url(),
        &[
            ("LABEL_GATEWAY_SERVER__INTERNAL_LISTEN", internal_s.as_str()),
            ("LABEL_GATEWAY_INTERNAL__TOKEN", token),
            ("LABEL_GATEWAY_AUTH__ALLOW_TTL", "5m"),
        ],
    ))
    .await;
    // The shipped config names three copies; here one gateway stands behind all three
    // lines (a label has one copy either way).
    let copy = Upstream {
        public: gw.addr(),
        internal: gw.internal_addr(),
    };
    let nginx = Nginx::start(&[copy, copy, copy], django.addr);
    // The user the browser logs in as (the password is the test app's default).
    let _ = django.session("station1");
    let out = tokio::process::Command::new(django::python())
        .arg(SCRIPT)
        .env("BROWSER_BASE_URL", format!("http://{}", nginx.public))
        .env("BROWSER_USERNAME", "station1")
        .env("BROWSER_PASSWORD", "password")
        .env("BROWSER_LABEL_PATH", "/shipping-label/DEMO123/")
        // Selenium must use the system's driver, never fetch one.
        .env("SE_OFFLINE", "true")
        .output()
        .await
        .expect("run the browser script");
    assert!(
        out.status.success(),
        "browser check failed:\n{}{}\nnginx:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        nginx.logs()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
