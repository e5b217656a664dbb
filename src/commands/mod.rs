//! One command per file: each parses its arguments and calls the engine.

pub mod apply;
pub mod audit;
pub mod check;
pub mod completions;
pub mod graph;
pub mod import;
pub mod init;
pub mod log;
pub mod man;
pub mod plan;
pub mod promote;
pub mod rollback;
pub mod schema;
pub mod show;
pub mod stacks;
pub mod state;
pub mod unlock;
pub mod validate;
pub mod verify;
