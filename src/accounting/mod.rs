//! What requests cost and who made them: pricing and the usage log (`state_dir/usage.jsonl`).

mod pricing;
mod usage_log;

pub use self::{
    pricing::cost_usd,
    usage_log::{
        log_files, Rotation, UsageLog, UsageRecord, UsageWriter, FILE_NAME, FLUSH_INTERVAL, MAX_FILE_BYTES,
    },
};
