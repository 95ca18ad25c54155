//! The rule validator, stored-rule reading, rule templates, evaluation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    closedloop_core::fuzzing::rule(data);
});
