//! Admin API key parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    closedloop_core::fuzzing::api_key(data);
});
