//! Herald's controller: hands LoadBalancer Services addresses from MetalLB-compatible pools.
pub mod allocator;
pub mod lease;
pub mod metrics;
pub mod migrate;
pub mod plan;
pub mod request;
pub mod run;
pub mod secret;
