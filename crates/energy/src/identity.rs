//! PCI and UUID identities live in `joulebench_core::identity` (the analysis reads
//! them too); this module keeps their path for the meters and the guard.

pub use joulebench_core::identity::*;
