//! `chitti-agent` binary.
fn main() {}
