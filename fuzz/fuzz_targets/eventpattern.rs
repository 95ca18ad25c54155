//! EventBridge pattern parsing and matching, with metamorphic and reference checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    closedloop_eventpattern::fuzzing::pattern(data);
});
