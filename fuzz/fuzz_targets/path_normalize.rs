#![no_main]
// The property lives in wxgate::fuzzing so that `cargo test` replays the
// saved inputs in fuzz/regressions/path_normalize through the same check.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wxgate::fuzzing::path_normalize(data));
