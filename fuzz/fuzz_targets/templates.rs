//! The minijinja template renderer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // A value only the environment holds: rendered output must never contain it.
        // SAFETY: set once, before libFuzzer runs any input, on its only thread.
        unsafe {
            std::env::set_var(
                closedloop_core::fuzzing::TEMPLATE_CANARY_VAR,
                "canary-5e1f0c9a",
            )
        };
    },
    |data: &[u8]| {
        closedloop_core::fuzzing::template(data);
    }
);
