//! `chitti-hub` binary.
fn main() {}
