//! Running orders: the state machine (`flow`), exactly once per process
//! (`registry`), reconciled by id with what was acknowledged (`ledger`),
//! and the handler the consumer group gives each record to (`handler`).
//! Beneath the pipeline's assembly; above Kafka, gRPC and the sinks.

pub mod flow;
pub mod handler;
pub mod ledger;
pub mod registry;
