//! Where orders and metrics go besides Kafka: the mirror (a consumer group
//! of its own) indexes them into Elasticsearch in bulk, or writes them to an
//! on-disk spool that `export` sends later; e-mail notifications.

pub mod backfill;
pub mod document;
pub mod elastic;
pub mod indexer;
pub mod kibana;
pub mod mirror;
pub mod notify;
pub mod outage;
pub mod spool;

pub use document::{Document, IndexNames, MetricKind};
pub use mirror::{
    MirrorHandle, MirrorSettings, MirrorState, MirrorStatus, MirrorTarget, MirrorTask,
};
