//! Every webhook adapter: proof headers, signature check, body parser (first byte picks the source).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    closedloop_core::fuzzing::webhook(data);
});
