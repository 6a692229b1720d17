//! The handler layer: how an async function becomes a handler. Its parameters are
//! [`extract`]ed from the message (or, with a [`pattern`] subscriber, from the topic), its
//! return value becomes a [`reply`], [`filter`] puts several handlers behind predicates on one
//! subscriber, [`schema`] describes payloads for AsyncAPI, and [`service`] runs a handler as
//! the innermost tower service of the pipeline.

mod async_fn;
pub mod extract;
pub mod filter;
pub mod pattern;
pub mod reply;
pub mod schema;
mod seeker;
pub mod service;
mod teardown;

pub use async_fn::Handler;
pub use seeker::Seeker;
