//! The hub's test harness, one for every file in `hub/tests/`: a store on a fresh
//! database of either backend ([`TestDb`]), [`on_both!`] to run a test body on SQLite
//! and on Postgres, the API at router level with its users signed in ([`Api`]), gateway
//! enrolment, sample findings ([`finding`], [`cool_finding`], [`ingested`]), and for the
//! broker tests a throw-away PKI, MQTT clients and a private Mosquitto ([`broker`]).

// Each test file uses part of the harness.
#![allow(dead_code, unused_macros)]

mod api;
pub mod broker;
mod db;
mod findings;
pub mod receiver;
pub mod smtp;

#[allow(unused_imports)]
pub use api::{assert_error, Api, Reply, Users, PASSWORD};
#[allow(unused_imports)]
pub use db::{options, TestDb};
#[allow(unused_imports)]
pub use findings::{at, cool_finding, finding, ingested};

use chitti_hub::store::prelude::*;
use chitti_hub::store::NewGateway;

/// Runs each named `async fn(backend: &str)` as two tests, `sqlite::<name>` and
/// `postgres::<name>`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name("sqlite").await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name("postgres").await
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both;

/// Enrols `site/gateway` with `public_key` (the site is created with it). The password
/// hash is never checked by these tests.
pub async fn enrol(store: &impl Store, site: &str, gateway: &str, public_key: [u8; 32]) {
    store
        .add_gateway(&NewGateway {
            site: site.into(),
            gateway: gateway.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            public_key,
        })
        .await
        .unwrap();
}
