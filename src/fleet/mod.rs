//! The whole deployment, seen from Kafka: every `serve`, `worker` and `run`
//! process of one consumer group, on any number of machines. Each process
//! announces itself on the processes topic ([`presence`]); an [`observer`]
//! reads that topic, the orders and events topics and the group's committed
//! offsets, and folds them into a [`view`] of who is there, where each order
//! is, and whether every accepted order finished exactly once.

pub mod observer;
pub mod presence;
pub mod view;
