//! events-core's integration tests: the bus conformance suite on [`MemoryBus`], the
//! in-memory bus's own exact figures, ingest of a real crewAI run, and the envelope's golden
//! files. One binary, one module per area.
//!
//! [`MemoryBus`]: hookstream_events_core::MemoryBus

mod conformance;
mod fixture;
mod golden;
mod memory;
