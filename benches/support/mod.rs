//! What the benchmark's workloads share: the server process, seeding, the
//! load generator, `/proc` readings, the peers, and the report.

pub mod litellm;
pub mod load;
pub mod process;
pub mod procfs;
pub mod report;
pub mod seed;
pub mod server;
