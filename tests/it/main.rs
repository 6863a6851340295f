//! Integration tests: the real gateway on `127.0.0.1:0` against real peers (s3s-fs with
//! SigV4 verification, the Django test app), one module per area.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod auth_faults;
mod badinput;
mod batch;
mod browser;
mod cache;
mod cli;
mod connections;
mod demo;
mod doctor;
mod fallback;
mod fleet;
mod hardening;
mod hot_list;
mod ingest;
mod lane;
mod lane_framing;
mod local;
mod mirror;
mod moto;
mod observe;
mod origin_faults;
mod prune;
mod redirect;
mod regenerate;
mod restart;
mod rotation;
mod service;
mod shutdown;
mod ssrf;
mod stale;
mod storage;
mod storage_dialect;
mod storage_tls;
mod store_framing;
mod terminals;
mod warm;
