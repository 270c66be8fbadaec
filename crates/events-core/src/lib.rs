//! hookstream's event core: the event envelope of SPEC §2, the CrewAI system event types
//! generated from the catalogue, subscription filters, and the event bus trait with its
//! in-memory implementation.
//!
//! This crate does no network IO and knows nothing of HTTP, webhooks or storage engines.

pub mod bus;
pub mod catalog;
pub mod event;
pub mod filter;
pub mod ingest;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{Bus, MemoryBus, Subscription};
pub use event::{Data, Draft, Event, EventType, Timestamp};
pub use filter::Filter;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
