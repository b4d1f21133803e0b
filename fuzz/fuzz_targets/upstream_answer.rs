#![no_main]
// The property lives in wxgate::fuzzing so that `cargo test` replays the
// saved inputs in fuzz/regressions/upstream_answer through the same check.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wxgate::fuzzing::upstream_answer(data));
