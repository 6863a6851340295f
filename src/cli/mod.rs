//! Operator commands around the gateway: `check-config` lives in `main.rs`; these need
//! storage. Each returns a report value so tests can check it and `main` prints it.

pub mod backup;
pub mod migrate;
pub mod presign;
