//! The bus conformance suite run on [`MemoryBus`], in both forms: a fresh bus per case, and
//! "restart" over shared state (a `MemoryBus` handle stands in for durable storage).

use hookstream_events_core::MemoryBus;

hookstream_events_core::bus_conformance!(|| async { MemoryBus::new() });

mod restart {
    use hookstream_events_core::MemoryBus;

    hookstream_events_core::bus_conformance!(
        restart: || async { MemoryBus::new() },
        |storage: MemoryBus| async move { storage }
    );
}
