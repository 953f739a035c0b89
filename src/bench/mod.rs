//! Built-in load generators (`tidings bench …`). Each measures one layer and prints a human
//! summary, or one JSON object with `--json`. Benchmarks say which durability mode they ran.

pub mod fanout;
pub mod log;
pub mod publish;
mod report;
pub mod send;
pub(crate) mod session_protocol;
pub mod soak;

pub(crate) use report::progress_bar;
