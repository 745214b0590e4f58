//! Where orders and metrics go besides Kafka: Elasticsearch in bulk, or an
//! on-disk spool that can be replayed into it later.

pub mod document;
pub mod elastic;
pub mod export;
pub mod kibana;
pub mod mirror;
pub mod notify;
pub mod spool;

pub use document::{Document, IndexNames, MetricKind};
pub use mirror::{SinkHandle, SinkSettings, SinkStatus, SinkTarget, SinkTask};
