//! One command per file: each parses its arguments and calls the engine.

pub mod apply;
pub mod check;
pub mod completions;
pub mod import;
pub mod init;
pub mod log;
pub mod man;
pub mod plan;
pub mod promote;
pub mod schema;
pub mod show;
pub mod unlock;
pub mod validate;
