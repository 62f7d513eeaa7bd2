//! Rule documents: parsing and compiling must return errors, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(spec) = ferry_transform::parse_spec(text) {
            let _ = ferry_transform::compile(&spec);
        }
    }
});
