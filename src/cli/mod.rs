//! Operator commands around the gateway: `check-config` (the config as it will run,
//! risky settings warned about) and the storage commands. Each returns a report value so
//! tests can check it and `main` prints it.

pub mod backup;
pub mod check;
pub mod migrate;
pub mod presign;
