//! The integration tests: one binary, a shared `TestEnv`.

mod audit;
#[cfg(all(feature = "aws", feature = "gcp"))]
mod aws;
mod ci;
mod cli;
mod common;
mod containment;
mod crash;
#[cfg(feature = "dagster")]
mod dagster;
#[cfg(all(feature = "aws", feature = "gcp"))]
mod dvc;
mod environments;
#[cfg(all(feature = "feast", feature = "gcp"))]
mod feast;
#[cfg(feature = "gcp")]
mod gcp;
mod integrity;
#[cfg(all(feature = "kubernetes", feature = "gcp"))]
mod kubernetes;
pub mod lifecycle;
mod markdown;
#[cfg(all(feature = "mlflow", feature = "gcp"))]
pub mod mlflow;
mod policy;
mod properties;
mod schema;
mod secrets;
mod signatures;
mod skips;
mod snapshots;
mod spec_errors;
mod stacks;
mod vertex;
