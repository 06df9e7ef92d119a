//! Fuzz the TFLite loader: any byte string must load or fail cleanly, and a
//! graph that loads must be accepted or rejected cleanly by the interpreter.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = edgecam::engine::tflite::load_bytes(data) {
        let _ = edgecam::engine::Interpreter::new(graph);
    }
});
