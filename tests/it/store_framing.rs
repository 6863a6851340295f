//! The direct storage client against a store stand-in that frames its answers the ways
//! no real S3 server does on demand: interim answers (`103 Early Hints`, `100 Continue`)
//! before the real one, split from it or in the same write, a `101`, a body framed both
//! by chunks and by `Content-Length`. One label's bytes never answer another's request,
//! and the cache never holds a label its storage stream did not end complete.

use std::time::Duration;

use crate::support::crafted::{Craft, CraftedStore};
use crate::support::{self, get_label, pdf_bytes, Responder, ANY_SESSION, HANG};

async fn gateway(store: &CraftedStore, check: &Responder) -> label_gateway::server::Running {
    support::start_gateway(support::origin_config(&store.endpoint(), &check.url(), &[])).await
}

async fn fetch(gw: &label_gateway::server::Running, tracking: &str) -> (u16, String, Vec<u8>) {
    let r = get_label(gw, tracking)
        .cookie(ANY_SESSION)
        .timeout(HANG)
        .send()
        .await;
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (status, cache, r.bytes().await.unwrap_or_default().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_answers_are_skipped_and_every_label_gets_its_own_bytes() {
    let (a, b) = (pdf_bytes(3_000, 1), pdf_bytes(4_000, 2));
    let check = Responder::allow_all().await;
    for (head, delay) in [
        (
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            Duration::from_millis(150),
        ),
        ("HTTP/1.1 100 Continue\r\n\r\n", Duration::from_millis(150)),
        // Joined to the final answer in one write.
        ("HTTP/1.1 103 Early Hints\r\n\r\n", Duration::ZERO),
    ] {
        let labels = vec![("LABELA", a.clone()), ("LABELB", b.clone())];
        let store = CraftedStore::start(labels, Craft::Before { head, delay }, usize::MAX).await;
        let gw = gateway(&store, &check).await;
        let (status, _, body) = fetch(&gw, "LABELA").await;
        assert_eq!((status, body == a), (200, true), "{head:?}: A gets A");
        let (status, cache, body) = fetch(&gw, "LABELB").await;
        assert_eq!(
            (status, cache.as_str(), body == b),
            (200, "MISS", true),
            "{head:?}: B gets B, never A's bytes"
        );
        let (status, cache, body) = fetch(&gw, "LABELB").await;
        assert_eq!((status, cache.as_str(), body == b), (200, "HIT", true));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_101_from_storage_is_refused_and_its_connection_never_reused() {
    let (a, b) = (pdf_bytes(3_000, 3), pdf_bytes(4_000, 4));
    let check = Responder::allow_all().await;
    let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n";
    let craft = Craft::Before {
        head,
        delay: Duration::from_millis(150),
    };
    let store =
        CraftedStore::start(vec![("LABELA", a.clone()), ("LABELB", b.clone())], craft, 1).await;
    let gw = gateway(&store, &check).await;
    let (status, _, _) = fetch(&gw, "LABELA").await;
    assert_eq!(status, 502, "a 101 is no answer to a label read");
    let (status, _, body) = fetch(&gw, "LABELB").await;
    assert_eq!(status, 200);
    assert!(body == b, "B gets B, not what followed the 101");
    assert!(!support::is_cached(&gw, "LABELA").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_framed_by_chunks_and_a_length_is_refused_and_never_cached() {
    let label = pdf_bytes(160, 5);
    let check = Responder::allow_all().await;
    let craft = Craft::ChunksAndLength { length: 20 };
    let store = CraftedStore::start(vec![("LABELC", label)], craft, usize::MAX).await;
    let gw = gateway(&store, &check).await;
    for attempt in 1..=2 {
        let (status, cache, body) = fetch(&gw, "LABELC").await;
        assert_eq!(
            status, 502,
            "attempt {attempt}: refused, not a 20-byte label"
        );
        assert_ne!(cache, "HIT", "attempt {attempt}");
        assert!(body.len() != 20, "attempt {attempt}");
    }
    assert!(!support::is_cached(&gw, "LABELC").await);
}

/// The bounded run of the `direct_vs_hyper` fuzz target: every committed seed (interim
/// answers split from and joined to their answer, Transfer-Encoding with Content-Length,
/// the classic smuggling shapes) and thirty fixed mutants of each, read by the direct
/// client and by hyper's client: the same status, header lines and body, or the direct
/// client refused the answer before passing a byte on.
#[tokio::test(flavor = "multi_thread")]
async fn direct_reads_every_seed_and_its_mutants_as_hyper_does_or_refuses_them() {
    use label_gateway::storage::differential::{compare, split_input};
    let (mut cases, mut read) = (0, 0);
    for (path, input) in support::seeds::cases("direct_vs_hyper", 30) {
        let (answer, piece) = split_input(&input);
        match compare(answer, piece).await {
            Ok(alike) => read += usize::from(alike),
            Err(why) => panic!(
                "{}: {:?} in pieces of {piece}: {why}",
                path.display(),
                String::from_utf8_lossy(answer)
            ),
        }
        cases += 1;
    }
    assert!(cases >= 2_500, "{cases} cases");
    // Many seeds are answers it must refuse, but hundreds are read, alike by both.
    assert!(read >= 500, "{read} of {cases} read by the direct client");
}
