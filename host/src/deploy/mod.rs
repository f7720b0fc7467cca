//! Deploy: what other engines run, generated from the same [`Plan`](crate::plan::Plan) as
//! `up` (never a second reading of the YAML).
//!
//! - [`workerd`]: an ecosystem's JavaScript Workers as a workerd config, each `depends_on` a
//!   service binding, so the same Workers run on Cloudflare's runtime side by side with
//!   pactown (`pactown export workerd`).

pub mod workerd;
