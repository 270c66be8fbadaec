//! Ingest of a real crewAI run: every line of `tests/fixtures/crewai-run.jsonl` (a copy of the
//! shared fixture, crewAI 1.15) parses unchanged into a draft that keeps its id, its data as
//! sent, and its timestamp at millisecond precision; the drafts publish and replay in order.

use std::path::Path;

use hookstream_events_core::bus::{Backpressure, Bus};
use hookstream_events_core::ingest::IngestEvent;
use hookstream_events_core::{catalog, MemoryBus};
use serde_json::Value;

fn lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crewai-run.jsonl");
    std::fs::read_to_string(path).expect("fixture").lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn every_fixture_line_becomes_a_draft_unchanged() {
    let lines = lines();
    assert_eq!(lines.len(), 87);
    let mut drafts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let raw: Value = serde_json::from_str(line).expect("JSON line");
        let event: IngestEvent = serde_json::from_str(line).expect("ingest shape");
        let draft =
            event.into_draft().unwrap_or_else(|e| panic!("line {}: {}: {e}", i + 1, e.field()));
        assert!(catalog::is_system(draft.event_type.as_str()), "line {}", i + 1);
        assert_eq!(draft.event_type.as_str(), raw["type"]);
        assert_eq!(draft.id.to_string(), raw["id"]);
        assert_eq!(Value::Object(draft.data.clone()), raw["data"], "line {}: data changed", i + 1);
        let micros = raw["timestamp"].as_str().expect("timestamp");
        // 2026-12-04T15:29:54.959434Z → 2026-12-04T15:29:54.959Z
        assert_eq!(draft.timestamp.to_string(), format!("{}Z", &micros[..23]));
        drafts.push(draft);
    }
    let bus = MemoryBus::new();
    let execution = uuid::Uuid::new_v4();
    let published =
        bus.publish(execution, drafts.clone(), Backpressure::Fail).await.expect("publish");
    assert_eq!((published.accepted, published.last_sequence), (87, 87));
    let replay = bus.read(execution, 0, 100).await.expect("read");
    for (event, draft) in replay.iter().zip(&drafts) {
        assert_eq!(event.id, draft.id);
        let json = serde_json::to_value(&**event).expect("serialize");
        assert_eq!(json["data"], Value::Object(draft.data.clone()));
    }
}
