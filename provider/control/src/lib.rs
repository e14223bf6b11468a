//! The control plane shared by the provider and the node agent: the records both read and write
//! and the store they live in. This is the only format that crosses process boundaries.
pub mod contract;
pub mod dir;
pub mod duration;
pub mod jobs;
pub mod records;
pub mod secrets;
pub mod store;

pub use dir::DirStore;
pub use store::{Condition, ETag, LeaseId, Store, StoreError, Versioned};
