//! What both Herald binaries share of the Kubernetes API: MetalLB's L2 kinds (and the
//! ServiceL2Status the speakers write), label selectors, pools as plain data and which of them
//! are in force, which Services Herald handles, cached watches that ride out an API server
//! outage, the telemetry endpoint and logging, and errors said once.
pub mod cache;
pub mod crd;
pub mod events;
pub mod facts;
pub mod pace;
pub mod pool;
pub mod pools;
pub mod report;
pub mod selector;
pub mod service;
pub mod telemetry;
