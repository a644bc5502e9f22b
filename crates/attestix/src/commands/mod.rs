//! One module per command.

pub mod keys;
pub mod serve;
