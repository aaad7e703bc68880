//! What the benchmarks' workloads share: the options and the run around
//! the workloads, the server process, seeding, the load generator, the
//! database through PostgreSQL's tools, `/proc` readings, the peers, and
//! the report.

// Each benchmark is a crate of its own that uses a part of these modules
// (the gateway's no SQL, the metering one no websockets), so the dead-code
// lint cannot tell what none of them uses.
#![allow(dead_code)]

pub mod cli;
pub mod litellm;
pub mod live;
pub mod load;
pub mod postgraphile;
pub mod process;
pub mod procfs;
pub mod report;
pub mod seed;
pub mod server;
pub mod sql;
