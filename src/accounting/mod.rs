//! What requests cost and who made them: pricing in integer micro-dollars, the usage log
//! (`state_dir/usage.jsonl`), and the spend rebuilt from it at start-up.

mod pricing;
mod spend;
mod usage_log;

pub use self::{
    pricing::{
        cost_micros, cost_usd, estimate_micros, resolve as resolve_price, usd, MediaUnits, Price, PriceTable,
        Tier, LONG_CONTEXT_THRESHOLD,
    },
    spend::rebuild as rebuild_spend,
    usage_log::{
        log_files, Rotation, UsageLog, UsageRecord, UsageReopener, UsageWriter, FILE_NAME, MAX_FILE_BYTES,
        SYNC_INTERVAL, WRITE_INTERVAL,
    },
};
