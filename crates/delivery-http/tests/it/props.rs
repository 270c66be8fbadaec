//! The delivery invariant under random fault scripts: the receiver sees every matching event
//! (or it is dead-lettered), in order after deduplication by `webhook-id`, and no event is
//! acknowledged to the bus before its batch got a 2xx or was dead-lettered.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookstream_delivery_http::{Dispatcher, MemoryLedger, Mode, PairKey};
use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus};
use hookstream_events_core::filter::Filter;
use proptest::prelude::*;
use uuid::Uuid;

use crate::receiver::{Receiver, Reply};
use crate::support::{
    batched, dispatcher_config, draft, terminal, webhook, AckCheck, RecordingBus,
};

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        6 => Just(Reply::status(200)),
        2 => prop::sample::select(vec![408u16, 425, 429, 500, 502, 503]).prop_map(Reply::status),
        1 => (0u64..5).prop_map(|s| Reply::status(503).retry_after(s.to_string())),
        1 => Just(Reply::reset()),
        1 => Just(Reply::status(200).delayed(Duration::from_secs(45))),
        1 => Just(Reply::status(413)),
        1 => prop::sample::select(vec![301u16, 400, 404]).prop_map(Reply::status),
        1 => Just(Reply::status(410)),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Realtime),
        (1usize..6, prop::bool::ANY).prop_map(|(n, wait)| {
            let wait = if wait { Duration::from_secs(1) } else { Duration::from_secs(3600) };
            batched(n, wait, 1 << 20)
        }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    script: Vec<Reply>,
    mode: Mode,
    types: Vec<bool>,
    llm_only: bool,
    split_at: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(reply(), 0..25),
        mode(),
        prop::collection::vec(prop::bool::ANY, 1..30),
        prop::bool::ANY,
        0usize..30,
    )
        .prop_map(|(script, mode, types, llm_only, split_at)| Case {
            script,
            mode,
            types,
            llm_only,
            split_at,
        })
}

async fn check(case: Case) -> Result<(), TestCaseError> {
    let rx = Receiver::start(case.script.clone()).await;
    let ledger = Arc::new(MemoryLedger::new());
    let key = PairKey::new(Uuid::now_v7(), 3);
    let mut drafts: Vec<_> = case
        .types
        .iter()
        .enumerate()
        .map(|(i, llm)| draft(if *llm { "llm_call_started" } else { "task_started" }, i as u64))
        .collect();
    drafts.push(terminal());
    let matching: BTreeSet<u64> = drafts
        .iter()
        .enumerate()
        .filter(|(_, d)| !case.llm_only || d.event_type.as_str().starts_with("llm_"))
        .map(|(i, _)| i as u64 + 1)
        .collect();

    let settled = {
        let (rx, ledger, matching) = (rx.clone(), ledger.clone(), matching.clone());
        move |sequence: u64| {
            let mut done: BTreeSet<u64> = rx.delivered_sequences().into_iter().collect();
            done.extend(ledger.dead_letters(&key).iter().flat_map(|d| d.sequences.clone()));
            matching.range(..=sequence).all(|s| done.contains(s))
        }
    };
    let check: AckCheck = Arc::new(settled);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let bus = Arc::new(RecordingBus {
        inner: MemoryBus::new(),
        acks: acks.clone(),
        violations: violations.clone(),
        check,
    });
    let dispatcher = Dispatcher::new(dispatcher_config(), ledger.clone()).expect("dispatcher");
    let filter = if case.llm_only { Filter::new(["llm_*"]).unwrap() } else { Filter::all() };
    let config = webhook(rx.url(), case.mode.clone()).with_filter(filter);
    let handle = dispatcher.spawn(bus.clone(), key, config);

    let rest = drafts.split_off(case.split_at.min(drafts.len() - 1));
    if !drafts.is_empty() {
        bus.publish(key.execution_id, drafts, Backpressure::Wait).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let total = bus.publish(key.execution_id, rest, Backpressure::Wait).await.expect("publish");
    handle.finished().await.expect("finished");

    let delivered = rx.delivered_sequences();
    prop_assert!(delivered.windows(2).all(|w| w[0] < w[1]), "order: {:?}", delivered);
    let dead: Vec<u64> =
        ledger.dead_letters(&key).iter().flat_map(|d| d.sequences.clone()).collect();
    let mut all: Vec<u64> = delivered.iter().chain(dead.iter()).copied().collect();
    all.sort_unstable();
    prop_assert_eq!(
        all,
        matching.iter().copied().collect::<Vec<_>>(),
        "delivered {:?} dead {:?}",
        delivered,
        dead
    );
    prop_assert!(
        violations.lock().unwrap().is_empty(),
        "acked early: {:?}",
        violations.lock().unwrap()
    );
    let acks = acks.lock().unwrap();
    prop_assert_eq!(acks.last().copied(), Some(total.last_sequence), "everything acknowledged");
    prop_assert!(acks.windows(2).all(|w| w[0] <= w[1]));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_event_arrives_in_order_or_is_dead_lettered_and_acks_wait(case in case()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(check(case))?;
    }
}
