//! Validated names, shared with the control plane.

pub use edge_common::names::*;
