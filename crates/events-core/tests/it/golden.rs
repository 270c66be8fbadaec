//! The envelope's golden files (`tests/golden/*.json`): parsing then serializing an event
//! gives back the file byte for byte (field order, timestamp format, numbers, data key order,
//! UTF-8), and producer timestamps with microseconds become milliseconds.

use std::fs;
use std::path::Path;

use hookstream_events_core::Event;

fn golden_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.display().to_string(), fs::read_to_string(&p).expect("read")))
        .collect();
    files.sort();
    files
}

#[test]
fn envelopes_round_trip_byte_for_byte() {
    let files = golden_files();
    assert!(files.len() >= 3, "golden files missing");
    for (path, text) in files {
        let event: Event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let again = serde_json::to_string(&event).expect("serialize") + "\n";
        assert_eq!(again, text, "{path} does not round-trip");
        let reparsed: Event = serde_json::from_str(&again).expect("reparse");
        assert_eq!(reparsed, event);
    }
}

#[test]
fn field_order_is_the_spec_order() {
    let (_, text) = &golden_files()[0];
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .expect("object")
            .keys()
            .cloned()
            .collect();
    assert_eq!(keys, ["id", "execution_id", "timestamp", "type", "sequence", "data"]);
}

#[test]
fn microseconds_and_offsets_become_utc_milliseconds() {
    let input = r#"{"id":"0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d0e","execution_id":"6c1f0a7e-2b7d-4d0e-9a51-3b1c2d4e5f60","timestamp":"2025-02-16T11:58:44.965999+01:00","type":"task_started","sequence":1,"data":{}}"#;
    let event: Event = serde_json::from_str(input).expect("parse");
    let out = serde_json::to_string(&event).expect("serialize");
    assert!(out.contains(r#""timestamp":"2025-02-16T10:58:44.965Z""#), "{out}");
}

#[test]
fn invalid_envelopes_are_refused() {
    let good = r#"{"id":"0193f1a2-7c4e-7b1a-9d2e-5f6a7b8c9d0e","execution_id":"6c1f0a7e-2b7d-4d0e-9a51-3b1c2d4e5f60","timestamp":"2025-02-16T10:58:44.965Z","type":"task_started","sequence":1,"data":{}}"#;
    assert!(serde_json::from_str::<Event>(good).is_ok());
    for (from, to) in [
        (r#""type":"task_started""#, r#""type":"1bad""#),
        (r#""data":{}"#, r#""data":null"#),
        (r#""data":{}"#, r#""data":[]"#),
        (r#""timestamp":"2025-02-16T10:58:44.965Z""#, r#""timestamp":"16/02/2025""#),
        (r#""sequence":1"#, r#""sequence":-1"#),
    ] {
        let bad = good.replace(from, to);
        assert!(serde_json::from_str::<Event>(&bad).is_err(), "accepted {bad}");
    }
}
