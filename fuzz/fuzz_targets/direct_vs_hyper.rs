//! The direct storage client against hyper's client: arbitrary answer bytes (the first
//! byte the size of the pieces they are written in) read by both give the same status,
//! header lines and body, or the direct client refuses the answer before passing a byte
//! on. The comparison is `label_gateway::storage::differential`, which the test suite
//! also runs over the committed seeds (`fuzz/seeds/direct_vs_hyper/`) and fixed mutants.

#![no_main]

use label_gateway::storage::differential::{compare, split_input};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    let (answer, piece) = split_input(data);
    if let Err(why) = RUNTIME.with(|rt| rt.block_on(compare(answer, piece))) {
        panic!("{:?}: {why}", String::from_utf8_lossy(answer));
    }
});
