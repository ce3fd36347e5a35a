//! Herald's controller: hands LoadBalancer Services addresses from MetalLB-compatible pools.
pub mod allocator;
pub mod cache;
pub mod crd;
pub mod lease;
pub mod migrate;
pub mod plan;
pub mod pool;
pub mod report;
pub mod run;
pub mod secret;
pub mod selector;
pub mod service;
pub mod telemetry;
