//! The durable embedded store (SQLite in WAL mode in the data dir), the default of
//! `hookstream serve`.
