//! Integration tests: the real gateway on `127.0.0.1:0` against real peers (s3s-fs with
//! SigV4 verification, the Django test app), one module per area.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod badinput;
mod cache;
mod cli;
mod faults;
mod ingest;
mod local;
mod regenerate;
mod shutdown;
mod storage;
