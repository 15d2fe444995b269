//! All integration tests in one binary: one link step (each test binary links candle, gemm,
//! image, axum...) instead of one per file. Run one module with `cargo test --test it caption::`.
//!
//! The tests of every module share this process and run in parallel threads: a test must not
//! change process-wide state (environment variables, the current directory, the Ctrl-C flag
//! `captioner::train::interrupt::global()`, rayon's global pool) that another test depends on.

mod attention;
mod bench_train_cli;
mod browser;
mod caption;
mod common;
mod data;
mod data_corpus;
mod decoder;
mod demo;
mod exit_status;
mod features_cli;
mod fetch;
mod fuzz_replay;
mod layers;
mod library;
mod library_cli;
mod library_page;
mod metrics;
mod pipeline;
mod precision;
mod preprocess;
mod process;
mod report;
mod resnet;
mod serve;
mod serve_batch;
mod shard;
mod slurm;
mod spatial;
mod synth;
mod train;
mod train_attention;
mod train_cli;
mod webdriver;
