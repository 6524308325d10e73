//! End-to-end tests: a real `conduit` process, real wasm components built from
//! `plugins/`, real sled files, and fake providers on 127.0.0.1.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod binding;
mod configs;
mod connectors;
mod crash;
mod execute;
mod faults;
mod fuzz;
mod github;
mod gmail;
mod hardening;
mod hotload;
mod lifecycle;
mod observe;
mod polyglot;
mod replicas;
mod sandbox;
mod seed;
mod serving;
mod slack;
mod soak;
mod stripe;
mod toolkit;
mod twilio;
