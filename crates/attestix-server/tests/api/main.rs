//! Black-box tests of the Attestix API over a real socket (port 0), each against a
//! fresh data directory, on SQLite and on PostgreSQL.

mod evm;
mod helpers;
#[path = "../tls/mod.rs"]
mod tls;

mod agent_cards;
mod audit;
mod auth;
mod blockchain;
mod compliance;
mod credentials;
mod delegations;
mod dids;
mod identities;
mod openapi;
mod outage;
mod provenance;
mod purge;
mod reputation;
mod restart;
mod tls_serving;
mod translate;
mod verification;
