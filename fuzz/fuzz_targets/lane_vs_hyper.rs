//! The public listener's connection lane against plain hyper: arbitrary request bytes
//! (the first byte bounds the size of the reads they are cut into) served by the lane and
//! by hyper alone show the service the same requests and write back the same bytes. The
//! comparison is `label_gateway::server::differential`, which the test suite also runs
//! over the committed seeds (`fuzz/seeds/lane_vs_hyper/`) and fixed mutants.

#![no_main]

use label_gateway::server::differential::{compare, split_input};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // The clock paused: a run stops as soon as both sides wait for more input.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    let (bytes, cut) = split_input(data);
    if let Err(why) = RUNTIME.with(|rt| rt.block_on(compare(bytes, cut))) {
        panic!("{:?} in reads of up to {cut}: {why}", String::from_utf8_lossy(bytes));
    }
});
