//! The operator's command line besides `run`/`check` (SPEC section 2): virtual keys and master
//! keys made from the OS RNG, admin API clients (`key`, `usage`, `health`, `config`) drawing
//! aligned tables or raw JSON, and the audit log's hash-chain check. Not the server: nothing
//! here runs inside the gateway.

mod audit;
mod client;
mod command;
mod keygen;
mod table;

pub use self::{
    audit::{hex_sha256, verify_chain, ChainCheck, GENESIS_HASH},
    client::{error_message, AdminClient, ClientError, Response, DEFAULT_ADMIN_URL},
    command::{
        main, run, usage_table, AdminArgs, AuditCommand, CliError, Command, ConfigCommand, Env, KeyCommand,
        KeyCreateArgs, Outcome, UsageArgs, ADMIN_TOKEN_ENV, ADMIN_URL_ENV,
    },
    keygen::{base62_32, new_master_key, new_virtual_key, RngError, KEY_PREFIX},
    table::{cell, Table},
};
