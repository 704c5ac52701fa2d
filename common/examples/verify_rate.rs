//! How long one Ed25519 verification of a 60 kB batch payload takes in the build it
//! runs in: what the hub pays per `/findings` message before anything else.
//!
//! ```text
//! cargo run -p chitti-common --example verify_rate            # the dev profile as configured
//! cargo run -p chitti-common --example verify_rate \
//!   --config 'profile.dev.package.curve25519-dalek.opt-level=0' \
//!   --config 'profile.dev.package.ed25519-dalek.opt-level=0' \
//!   --config 'profile.dev.package.sha2.opt-level=0'             # as before #20
//! cargo run --release -p chitti-common --example verify_rate  # a release build
//! ```

use chitti_common::signing::signing_key_from_seed;
use ed25519_dalek::{Signer, Verifier};
use std::time::Instant;

/// The payload size: a signed batch of 50 realistic findings is about 60 kB.
const PAYLOAD_BYTES: usize = 60_000;
const ROUNDS: u32 = 100;

fn main() {
    let key = signing_key_from_seed(&[7; 32]);
    let payload = vec![0x5a_u8; PAYLOAD_BYTES];
    let signature = key.sign(&payload);
    let public = key.verifying_key();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        public
            .verify(std::hint::black_box(&payload), &signature)
            .expect("verifies");
    }
    let each = started.elapsed() / ROUNDS;
    println!(
        "ed25519 verify of {PAYLOAD_BYTES} bytes: {:.3} ms each ({ROUNDS} rounds, {} build)",
        each.as_secs_f64() * 1000.0,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
