//! `mesh-ztunnel`: the reference per-node L4 proxy, composed from the mesh crates. [`serve::run`] wires
//! configuration, identity and listeners together; each listener is a module: [`socks5`] and [`capture`]
//! (outbound), [`inbound`] (HBONE) and [`plaintext`] (redirected plaintext inbound), with [`outbound`]
//! deciding where a connection goes. [`node`] is what they share; [`live`] re-authorizes open connections
//! after a configuration change; [`admin`] and [`metrics`] are the operational views.
#![forbid(unsafe_code)]

pub mod admin;
pub mod args;
pub mod capture;
pub mod inbound;
pub mod live;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod plaintext;
pub mod serve;
pub mod socks5;
