//! One request's way through the gate: `path` (normalize), `routes` (classify),
//! `identity` and `email` (who asks), `gate` (decide), `responses` (answer),
//! `metrics` (count). `framing` says whether a body follows the headers.

pub mod email;
pub mod framing;
pub mod gate;
pub mod identity;
pub mod metrics;
pub mod path;
pub mod responses;
pub mod routes;
