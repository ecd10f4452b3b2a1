//! The audit log: the hash chain and `audit verify`, the database's refusal to change events,
//! the viewer and API, export, retention and the webhook; on SQLite and PostgreSQL.

mod common;

#[path = "audit/batched.rs"]
mod batched;
#[path = "audit/chain.rs"]
mod chain;
#[path = "audit/emitted.rs"]
mod emitted;
#[path = "audit/streams.rs"]
mod streams;
#[path = "audit/viewer.rs"]
mod viewer;
