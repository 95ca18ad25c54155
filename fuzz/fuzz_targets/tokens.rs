//! Rating-link tokens: verify, keyring specs, sign/verify/tamper.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    closedloop_core::fuzzing::token(data);
});
