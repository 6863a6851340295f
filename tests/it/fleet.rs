//! Several copies behind real nginx, running the shipped `deploy/nginx/` config: three
//! gateway processes over the real S3 server, nginx hashing by tracking number in its
//! public and its internal server. Each label is fetched by one copy and held only there
//! whatever the spelling of its path; the app's purge and ingest through the internal
//! server reach that same copy; a killed copy's labels (and only those) move to the
//! others, and come back when it restarts; a copy restarted gracefully under requests
//! fails none of them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::nginx::{Nginx, Upstream};
use crate::support::process::{s3_toml, GatewayProcess, S3_ENV};
use crate::support::{self, pdf_bytes, Responder, S3Server, ANY_SESSION};

const COPIES: usize = 3;
const LABELS: usize = 100;
const TOKEN: &str = "fleet-internal-token";

/// The S3 server holding `LABELS` labels, three copies, nginx in front.
struct Fleet {
    s3: S3Server,
    _check: Responder,
    /// Each copy's two addresses (the same across a restart).
    copies: Vec<Upstream>,
    /// The copies' processes, to kill and restart while clients use the fleet.
    processes: Mutex<Vec<GatewayProcess>>,
    nginx: Nginx,
    labels: Vec<(String, Vec<u8>)>,
    client: reqwest::Client,
}

/// One answer through nginx.
struct Answer {
    status: u16,
    x_cache: String,
    body: Vec<u8>,
}

impl Fleet {
    async fn start() -> Fleet {
        let s3 = S3Server::start().await;
        let mut labels = Vec::new();
        for i in 0..LABELS {
            let tracking = format!("FLEET{i:03}");
            let data = pdf_bytes(6_000 + i * 41, i as u8);
            s3.put_label(&tracking, &data).await;
            labels.push((tracking, data));
        }
        let check = Responder::allow_all().await;
        let toml = s3_toml(
            &s3,
            &check.url(),
            "",
            "[regenerate]\nurl = \"\"\n[log]\naccess_log = false\n",
        );
        let mut env = S3_ENV.to_vec();
        env.push(("LABEL_GATEWAY_INTERNAL__TOKEN", TOKEN));
        let processes: Vec<GatewayProcess> = (0..COPIES)
            .map(|_| GatewayProcess::start(&toml, &env))
            .collect();
        let copies: Vec<Upstream> = processes
            .iter()
            .map(|c| Upstream {
                public: c.addr,
                internal: c.internal,
            })
            .collect();
        // The app's other pages are not exercised here: any address does.
        let nginx = Nginx::start(&copies, check.addr);
        Fleet {
            s3,
            _check: check,
            copies,
            processes: Mutex::new(processes),
            nginx,
            labels,
            client: support::client(),
        }
    }

    /// `GET {path}` through nginx's public server with a session cookie.
    async fn get(&self, path: &str) -> Result<Answer, String> {
        let r = self
            .client
            .get(format!("http://{}{path}", self.nginx.public))
            .header("cookie", ANY_SESSION)
            .timeout(support::HANG)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = r.status().as_u16();
        let x_cache = r
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = r
            .bytes()
            .await
            .map_err(|e| format!("GET {path}: body: {e}"))?
            .to_vec();
        Ok(Answer {
            status,
            x_cache,
            body,
        })
    }

    /// `GET {path}` through nginx, which must be 200 with `expected`; its X-Cache.
    async fn get_ok(&self, path: &str, expected: &[u8]) -> String {
        let a = self.get(path).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.status, 200, "GET {path}:\n{}", self.nginx.logs());
        assert!(a.body == expected, "GET {path}: wrong bytes");
        a.x_cache
    }

    /// A call through nginx's internal server, with the app's bearer token.
    async fn internal(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> u16 {
        self.internal_text(method, path, body).await.0
    }

    /// [`Fleet::internal`], with the answer's body.
    async fn internal_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, String) {
        let r = self
            .client
            .request(method, format!("http://{}{path}", self.nginx.internal))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .timeout(support::HANG)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} through the internal server: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Whether copy `c` holds `tracking` in memory: a HEAD straight to the copy says HIT
    /// (a HEAD never fills the cache, so asking changes nothing).
    async fn holds(&self, c: usize, tracking: &str) -> bool {
        let r = self
            .client
            .head(format!(
                "http://{}/shipping-label/{tracking}/",
                self.copies[c].public
            ))
            .header("cookie", ANY_SESSION)
            .timeout(support::HANG)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {tracking} on copy {c}: {e}"));
        assert_eq!(r.status(), 200, "HEAD {tracking} on copy {c}");
        r.headers().get("x-cache").is_some_and(|v| v == "HIT")
    }

    /// The live copies that hold `tracking`.
    async fn holders(&self, tracking: &str, live: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for &c in live {
            if self.holds(c, tracking).await {
                out.push(c);
            }
        }
        out
    }

    /// The one copy of `live` that holds each label; panics if a label is held by none
    /// or by several.
    async fn owners(&self, live: &[usize]) -> Vec<usize> {
        let mut owners = Vec::new();
        for (t, _) in &self.labels {
            let h = self.holders(t, live).await;
            assert_eq!(
                h.len(),
                1,
                "{t} is held by copies {h:?}, expected exactly one"
            );
            owners.push(h[0]);
        }
        owners
    }

    /// A counter or gauge from copy `c`'s `/metrics` (its internal listener).
    async fn metric(&self, c: usize, name: &str) -> u64 {
        let text = support::metrics(self.copies[c].internal).await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in copy {c}'s metrics"))
    }

    async fn entries(&self, c: usize) -> u64 {
        self.metric(c, "label_gateway_cache_entries").await
    }

    /// Waits until `copies` hold `total` labels between them. A copy stores a label just
    /// after its last byte went out, and a HEAD does not wait for that: settle first,
    /// then ask who holds what.
    async fn settle(&self, copies: &[usize], total: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut held = Vec::new();
            for &c in copies {
                held.push(self.entries(c).await);
            }
            if held.iter().sum::<u64>() == total {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "copies {copies:?} hold {held:?} labels, expected {total} in all"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every label once through nginx, 8 at a time; each must come back whole.
    async fn sweep(self: &Arc<Self>) -> Vec<String> {
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (fleet, next) = (self.clone(), next.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((t, data)) = fleet.labels.get(i) else {
                            return seen;
                        };
                        let x = fleet.get_ok(&format!("/shipping-label/{t}/"), data).await;
                        seen.push((i, x));
                    }
                })
            })
            .collect();
        let mut x_cache = vec![String::new(); LABELS];
        for task in tasks {
            for (i, x) in task.await.expect("sweep task") {
                x_cache[i] = x;
            }
        }
        x_cache
    }
}

/// 300 requests for 100 labels through nginx, each label under three spellings of its
/// path (`/t/`, `/t`, `/t/?query`): storage sees each label once, each label is held by
/// exactly one copy, and the copies' own metrics add up to the hot set, shared out.
#[tokio::test(flavor = "multi_thread")]
async fn each_label_is_fetched_once_and_held_by_exactly_one_copy_whatever_its_spelling() {
    let fleet = Arc::new(Fleet::start().await);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (fleet, next) = (fleet.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((t, data)) = fleet.labels.get(i) else {
                        return;
                    };
                    let spellings = [
                        format!("/shipping-label/{t}/"),
                        format!("/shipping-label/{t}"),
                        format!("/shipping-label/{t}/?copies=2&printer=dock-3"),
                    ];
                    let mut seen = Vec::new();
                    for path in &spellings {
                        seen.push(fleet.get_ok(path, data).await);
                    }
                    assert_eq!(seen, ["MISS", "HIT", "HIT"], "{t}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    assert_eq!(fleet.s3.gets(), LABELS, "storage GETs for {LABELS} labels");

    let all: Vec<usize> = (0..COPIES).collect();
    fleet.settle(&all, LABELS as u64).await;
    let mut entries = Vec::new();
    let mut fetches = 0;
    for c in 0..COPIES {
        entries.push(fleet.entries(c).await);
        fetches += fleet.metric(c, "label_gateway_storage_fetches_total").await;
    }
    assert_eq!(fetches, LABELS as u64, "storage fetches over all copies");
    assert_eq!(entries.iter().sum::<u64>(), LABELS as u64, "{entries:?}");
    assert!(
        entries.iter().all(|&n| n > 0),
        "every copy holds a share: {entries:?}"
    );

    let owners = fleet.owners(&all).await;
    for (c, &held) in entries.iter().enumerate() {
        let owned = owners.iter().filter(|&&o| o == c).count() as u64;
        assert_eq!(
            owned, held,
            "copy {c}: labels it holds vs its cache_entries"
        );
    }
    assert_eq!(fleet.s3.gets(), LABELS, "asking the copies fetched nothing");
}

/// `DELETE /internal/cache/{t}` and `PUT /internal/labels/{t}?overwrite=true` through
/// nginx's internal server reach the copy that serves `t`'s page requests: the purge
/// empties that copy's entry, the replaced label is served new at once. Purging all 100
/// labels through the internal server leaves every copy empty: the internal upstream
/// picks, for every label, the copy the public one picked.
#[tokio::test(flavor = "multi_thread")]
async fn purge_and_overwrite_through_the_internal_server_reach_the_copy_holding_the_label() {
    let fleet = Arc::new(Fleet::start().await);
    let warm = fleet.sweep().await;
    assert!(warm.iter().all(|x| x == "MISS"), "{warm:?}");
    let all: Vec<usize> = (0..COPIES).collect();
    fleet.settle(&all, LABELS as u64).await;
    let owners = fleet.owners(&all).await;

    // Purge one label: its copy lets it go; the next print fetches it again, there.
    let (t, data) = &fleet.labels[7];
    let owner = owners[7];
    let before = fleet.entries(owner).await;
    let status = fleet
        .internal(
            reqwest::Method::DELETE,
            &format!("/internal/cache/{t}"),
            vec![],
        )
        .await;
    assert_eq!(status, 204, "{}", fleet.nginx.logs());
    assert_eq!(fleet.entries(owner).await, before - 1);
    assert!(fleet.holders(t, &all).await.is_empty(), "{t} still held");
    let gets = fleet.s3.gets();
    let path = format!("/shipping-label/{t}/");
    assert_eq!(fleet.get_ok(&path, data).await, "MISS");
    assert_eq!(fleet.s3.gets(), gets + 1);
    fleet.settle(&[owner], before).await;
    assert_eq!(fleet.holders(t, &all).await, [owner]);

    // Replace another label: the copy that holds the old bytes drops them.
    let (t, old) = &fleet.labels[42];
    let owner = owners[42];
    let new = pdf_bytes(old.len() + 1_000, 199);
    let status = fleet
        .internal(
            reqwest::Method::PUT,
            &format!("/internal/labels/{t}?overwrite=true"),
            new.clone(),
        )
        .await;
    assert!((200..300).contains(&status), "ingest: {status}");
    let path = format!("/shipping-label/{t}/");
    assert_eq!(fleet.get_ok(&path, &new).await, "MISS", "new bytes at once");
    assert_eq!(fleet.get_ok(&path, &new).await, "HIT");
    assert_eq!(fleet.holders(t, &all).await, [owner]);

    // A call every copy must see (a session revocation) is refused, not handed to one
    // copy: the app sends those to each copy's internal listener.
    let (status, text) = fleet
        .internal_text(
            reqwest::Method::POST,
            "/internal/sessions/revoke",
            br#"{"session_key": "abc"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("each copy"),
        "answered by nginx itself: {text}"
    );

    // Every label purged through the internal server, either spelling: nothing left
    // anywhere, so each purge reached the copy the public server had sent the label to.
    for (i, (t, _)) in fleet.labels.iter().enumerate() {
        let slash = if i % 2 == 0 { "/" } else { "" };
        let path = format!("/internal/cache/{t}{slash}");
        let status = fleet.internal(reqwest::Method::DELETE, &path, vec![]).await;
        assert_eq!(status, 204, "{path}");
    }
    for c in 0..COPIES {
        assert_eq!(fleet.entries(c).await, 0, "copy {c} still holds labels");
    }
}

/// A copy killed mid-run: at most the requests it had in flight fail, and only for its
/// own labels; its labels move to the others (each fetched once by the one copy nginx
/// rehashes it to) while every other label stays hot where it was. Restarted on the same
/// ports, it takes its labels back.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_copy_moves_only_its_labels_and_takes_them_back_when_restarted() {
    let fleet = Arc::new(Fleet::start().await);
    fleet.sweep().await;
    let all: Vec<usize> = (0..COPIES).collect();
    fleet.settle(&all, LABELS as u64).await;
    let owners = fleet.owners(&all).await;
    let victim = 1;
    let survivors: Vec<usize> = all.iter().copied().filter(|&c| c != victim).collect();
    let moved: Vec<usize> = (0..LABELS).filter(|&i| owners[i] == victim).collect();
    assert!(!moved.is_empty(), "copy {victim} owns no label");
    let gets_warm = fleet.s3.gets();

    // Clients print labels in a loop; the copy dies under them.
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 150;
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (fleet, killed, done) = (fleet.clone(), killed.clone(), done.clone());
            tokio::spawn(async move {
                let mut log = Vec::new();
                for n in 0..PER_CLIENT {
                    let i = (k * 13 + n * 7) % LABELS;
                    let (t, data) = &fleet.labels[i];
                    let after_kill = killed.load(Ordering::SeqCst);
                    let outcome = match fleet.get(&format!("/shipping-label/{t}/")).await {
                        Ok(a) if a.status == 200 && a.body == *data => Ok(a.x_cache),
                        Ok(a) => Err(format!("{} {}", a.status, a.x_cache)),
                        Err(e) => Err(e),
                    };
                    log.push((i, after_kill, outcome));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                log
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) < CLIENTS * PER_CLIENT / 3 {
        assert!(Instant::now() < deadline, "clients stalled before the kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    fleet.processes.lock().expect("processes")[victim].kill();
    killed.store(true, Ordering::SeqCst);
    let mut log = Vec::new();
    for client in clients {
        log.extend(client.await.expect("client task"));
    }

    let failed: Vec<_> = log.iter().filter(|(_, _, o)| o.is_err()).collect();
    assert!(
        failed.len() <= CLIENTS,
        "more failures than requests in flight at the kill: {failed:?}"
    );
    for (i, after_kill, outcome) in &failed {
        assert!(
            owners[*i] == victim && !after_kill,
            "label {i} (copy {}) failed, {}: {outcome:?}",
            owners[*i],
            if *after_kill {
                "asked after the kill"
            } else {
                "in flight"
            },
        );
    }
    for (i, _, outcome) in &log {
        if owners[*i] != victim {
            assert_eq!(
                outcome.as_deref(),
                Ok("HIT"),
                "label {i} of surviving copy {} did not stay hot",
                owners[*i]
            );
        }
    }
    let asked_after: Vec<usize> = log
        .iter()
        .filter(|(i, after, _)| *after && owners[*i] == victim)
        .map(|(i, _, _)| *i)
        .collect();
    assert!(
        !asked_after.is_empty(),
        "no moved label was asked after the kill"
    );

    // Every moved label once more: each now lives on exactly one survivor, fetched from
    // storage once in all; the survivors' own labels were never fetched again.
    let x_cache = fleet.sweep().await;
    for (i, x) in x_cache.iter().enumerate() {
        if owners[i] != victim {
            assert_eq!(x, "HIT", "label {i} of surviving copy {}", owners[i]);
        }
    }
    assert_eq!(
        fleet.s3.gets() - gets_warm,
        moved.len(),
        "storage GETs after the kill: one per moved label"
    );
    fleet.settle(&survivors, LABELS as u64).await;
    for &i in &moved {
        let h = fleet.holders(&fleet.labels[i].0, &survivors).await;
        assert_eq!(h.len(), 1, "moved label {i} is held by {h:?}");
    }
    for i in (0..LABELS).filter(|i| owners[*i] != victim) {
        assert!(
            fleet.holds(owners[i], &fleet.labels[i].0).await,
            "label {i}"
        );
    }

    // Restarted on the same ports: once nginx's fail_timeout passes it tries the copy
    // again, and the copy's labels go back to it.
    fleet.processes.lock().expect("processes")[victim].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while fleet.entries(victim).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the restarted copy got no label back:\n{}",
            fleet.nginx.logs()
        );
        let (t, data) = &fleet.labels[moved[n % moved.len()]];
        fleet.get_ok(&format!("/shipping-label/{t}/"), data).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.sweep().await;
    let gets = fleet.s3.gets();
    let x_cache = fleet.sweep().await;
    assert!(x_cache.iter().all(|x| x == "HIT"), "{x_cache:?}");
    assert_eq!(fleet.s3.gets(), gets, "every label hot again");
    for &i in &moved {
        assert!(
            fleet.holds(victim, &fleet.labels[i].0).await,
            "label {i} is back on copy {victim}"
        );
    }
    assert_eq!(fleet.entries(victim).await, moved.len() as u64);
}

/// A copy restarted gracefully under continuous requests, as a deploy or `docker compose
/// restart` does it (SIGTERM: the copy drains, then a new process binds its ports): no
/// request fails. nginx sends what the copy refuses or resets on its kept-alive
/// connections to the next copy (`proxy_next_upstream error`), the copy finishes what it
/// had in flight, and once back it serves its labels again.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_restarted_under_requests_fails_none() {
    let fleet = Arc::new(Fleet::start().await);
    fleet.sweep().await;
    let all: Vec<usize> = (0..COPIES).collect();
    fleet.settle(&all, LABELS as u64).await;
    let victim = 2;

    const CLIENTS: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (fleet, stop, done) = (fleet.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut n = k * 13;
                while !stop.load(Ordering::SeqCst) {
                    n += 7;
                    let (t, data) = &fleet.labels[n % LABELS];
                    match fleet.get(&format!("/shipping-label/{t}/")).await {
                        Ok(a) if a.status == 200 && a.body == *data => {}
                        Ok(a) => failed.push(format!("{t}: {} {}", a.status, a.x_cache)),
                        Err(e) => failed.push(e),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failed
            })
        })
        .collect();
    let wait_for = |at_least: usize, what: &'static str| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while done.load(Ordering::SeqCst) < at_least {
                assert!(Instant::now() < deadline, "clients stalled {what}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(300, "before the restart").await;
    let mut old = fleet.processes.lock().expect("processes")[victim].replace();
    let exit = tokio::task::spawn_blocking(move || old.wait().expect("wait"))
        .await
        .expect("wait thread");
    assert!(exit.success(), "the old copy: {exit}");
    wait_for(done.load(Ordering::SeqCst) + 300, "after the restart").await;
    // Once nginx tries it again (fail_timeout), the new copy serves its labels.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet.entries(victim).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the restarted copy got no request back:\n{}",
            fleet.nginx.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failed = Vec::new();
    for client in clients {
        failed.extend(client.await.expect("client task"));
    }
    let total = done.load(Ordering::SeqCst);
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed across the restart: {failed:?}\n{}",
        failed.len(),
        fleet.nginx.logs()
    );
    let logs = fleet.processes.lock().expect("processes")[victim].logs();
    assert!(logs.contains("drained, exiting"), "{logs}");
}
