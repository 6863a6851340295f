//! The bounded run of the `lane_vs_hyper` fuzz target: every committed seed of
//! `fuzz/seeds/lane_vs_hyper/` (the classic request smuggling shapes, pipelining, HTTP/1.0,
//! `Expect`, the HTTP/2 preface at the start and midway) and fixed mutants of each, served
//! by the public listener's lane and by hyper alone over in-memory streams: the service
//! sees the same requests and the client the same bytes. The comparison is
//! `label_gateway::server::differential`.

use label_gateway::server::differential::{compare, split_input};

use crate::support;

#[tokio::test(start_paused = true)]
async fn the_lane_frames_every_seed_and_its_mutants_as_hyper_does() {
    let (mut cases, mut requests) = (0, 0);
    for (path, input) in support::seeds::cases("lane_vs_hyper", 40) {
        let (bytes, cut) = split_input(&input);
        match compare(bytes, cut).await {
            Ok(seen) => requests += seen,
            Err(why) => panic!(
                "{}: {:?} in reads of up to {cut}: {why}",
                path.display(),
                String::from_utf8_lossy(bytes)
            ),
        }
        cases += 1;
    }
    assert!(cases >= 2_000, "{cases} cases");
    // Many mutants are refused by both, but most reach the service, alike.
    assert!(requests >= 2_000, "{requests} requests over {cases} cases");
}

/// The lane's entry point for in-memory streams serves pipelined requests over a
/// `tokio::io::duplex` with the whole gateway behind it, as over a socket.
#[tokio::test]
async fn the_lane_serves_a_duplex_stream_with_the_gateway_behind_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\
         [storage]\nbackend = \"local\"\nlocal_root = \"{}\"\n\
         [auth]\ncheck_url = \"http://127.0.0.1:9/check\"\n[log]\naccess_log = false\n",
        dir.path().display()
    );
    let config = crate::support::config(&toml, &[("LABEL_GATEWAY_REGENERATE__URL", "")]);
    let gateway = std::sync::Arc::new(label_gateway::gateway::Gateway::new(config).unwrap());
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(label_gateway::server::serve_lane(server, gateway));
    client
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n\
              GET /shipping-label/1Z999/ HTTP/1.1\r\nHost: g\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    served.await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let statuses: Vec<_> = answer
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(|l| &l[9..12])
        .collect();
    assert_eq!(statuses.len(), 3, "{answer}");
    assert_eq!((statuses[0], statuses[2]), ("200", "200"), "{answer}");
    assert_ne!(statuses[1], "200", "a label without a session: {answer}");
}
