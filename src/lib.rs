//! mlops: Git-native declarative infrastructure-as-code for ML assets.
//!
//! `spec` loads and validates `mlops.yaml`; `engine` plans and applies against the providers of
//! the `registry`; `lineage` records each apply in Git; `ops` holds the operations commands call
//! (the apply transaction among them); `audit` answers questions of lineage; `render` turns plans into text or JSON; `cli` and
//! `commands` are the command line on top.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod lineage;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod render;
pub mod secrets;
pub mod spec;
pub mod stacks;

pub use mlops_provider_core as provider;
