//! Fuzz target for the envelope parser: never panics, and whatever it accepts survives a
//! write → parse round trip with the same item types and payloads.
#![no_main]

use faultline::envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = envelope::parse(data, 1000) else {
        return;
    };
    let header = serde_json::Value::Object(env.header.clone());
    let items: Vec<(serde_json::Value, &[u8])> = env
        .items
        .iter()
        .map(|i| (serde_json::Value::Object(i.header.clone()), i.payload))
        .collect();
    let written = envelope::write(&header, &items);
    let again = envelope::parse(&written, 1000).expect("a written envelope parses");
    assert_eq!(again.items.len(), env.items.len());
    for (a, b) in env.items.iter().zip(&again.items) {
        assert_eq!(a.ty(), b.ty());
        assert_eq!(a.payload, b.payload);
    }
});
