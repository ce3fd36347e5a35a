//! Herald's controller: hands LoadBalancer Services addresses from MetalLB-compatible pools.
pub mod crd;
