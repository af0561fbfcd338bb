//! What a request costs, in integer micro-dollars. Prices are fixed point: token prices in
//! micro-dollars per million tokens (so `tokens × price` is exact, in pico-dollars), media
//! prices in nano-dollars per unit; a request's cost is rounded to the nearest micro-dollar
//! once. Floating point appears only when config (USD) is read and when a cost is shown.
//!
//! Usage follows the IR convention (`formats/ir.rs`): `input_tokens` counts every prompt
//! token, cache reads and writes included, and `reasoning_tokens` are inside
//! `output_tokens`. So uncached input = input − cache reads − cache writes, each part at its
//! own price, and reasoning is never charged twice.
//!
//! Where prices come from, in the order [`resolve`] applies: the served target's `pricing:`,
//! the alias's `pricing:`, then the shipped table `conf/prices.yaml` by the target's model
//! id ([`PriceTable::shipped`]). None of them: cost 0 (the caller warns once per alias).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::Pricing;
use crate::formats::Usage;

/// Input above this many tokens bills the whole request at the `above_200k` tier.
pub const LONG_CONTEXT_THRESHOLD: u64 = 200_000;

const SHIPPED: &str = include_str!("../../conf/prices.yaml");

/// Prices of one model. Token prices in micro-dollars per million tokens, media prices in
/// nano-dollars per unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Cache reads; `None` = billed as input.
    pub cached_input: Option<u64>,
    /// Cache writes; `None` = billed as input.
    pub cache_write: Option<u64>,
    /// Prices of the whole request when its input exceeds [`LONG_CONTEXT_THRESHOLD`].
    pub above_200k: Option<Tier>,
    /// Batch prices, when configured.
    pub batch: Option<Tier>,
    pub per_image_nanos: u64,
    pub per_audio_second_nanos: u64,
    pub per_video_second_nanos: u64,
}

/// Long-context tier prices (micro-dollars per million tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tier {
    pub input: u64,
    pub output: u64,
    /// `None` = the base cache-read price scaled like the input price.
    pub cached_input: Option<u64>,
}

/// Non-token units of a request (images generated or edited, audio and video seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MediaUnits {
    pub images: u64,
    pub audio_seconds: f64,
    pub video_seconds: f64,
}

/// The shipped price table, by model id.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    models: HashMap<String, Price>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    models: HashMap<String, Pricing>,
}

// === impl Price ===

impl Price {
    /// Fixed-point prices from a config `pricing:` block (USD).
    pub fn from_config(p: &Pricing) -> Price {
        Price {
            input: usd_to_micros(p.input_per_mtok),
            output: usd_to_micros(p.output_per_mtok),
            cached_input: p.cached_input_per_mtok.map(usd_to_micros),
            cache_write: p.cache_write_per_mtok.map(usd_to_micros),
            above_200k: p.above_200k.as_ref().map(|t| Tier {
                input: usd_to_micros(t.input_per_mtok),
                output: usd_to_micros(t.output_per_mtok),
                cached_input: t.cached_input_per_mtok.map(usd_to_micros),
            }),
            batch: p.batch.as_ref().map(|t| Tier {
                input: usd_to_micros(t.input_per_mtok),
                output: usd_to_micros(t.output_per_mtok),
                cached_input: t.cached_input_per_mtok.map(usd_to_micros),
            }),
            per_image_nanos: usd_to_nanos(p.per_image.unwrap_or(0.0)),
            per_audio_second_nanos: usd_to_nanos(p.per_audio_second.unwrap_or(0.0)),
            per_video_second_nanos: usd_to_nanos(p.per_video_second.unwrap_or(0.0)),
        }
    }

    /// The prices of a batch's usage: the `batch` tier when configured, else these.
    pub fn for_batch(&self) -> Price {
        match self.batch {
            Some(t) => Price {
                input: t.input,
                output: t.output,
                cached_input: t.cached_input.or(self.cached_input),
                above_200k: None,
                batch: None,
                ..*self
            },
            None => *self,
        }
    }

    /// The token prices that apply to a request with `input_tokens` of input:
    /// `(input, output, cache read, cache write)`.
    fn token_rates(&self, input_tokens: u64) -> (u64, u64, u64, u64) {
        let read = self.cached_input.unwrap_or(self.input);
        let write = self.cache_write.unwrap_or(self.input);
        match self.above_200k {
            Some(t) if input_tokens > LONG_CONTEXT_THRESHOLD => {
                // Cache prices the tier does not name scale with the input price.
                let scale = |p: u64| {
                    if self.input == 0 {
                        p
                    } else {
                        u64::try_from(u128::from(p) * u128::from(t.input) / u128::from(self.input))
                            .unwrap_or(u64::MAX)
                    }
                };
                (t.input, t.output, t.cached_input.unwrap_or_else(|| scale(read)), scale(write))
            }
            _ => (self.input, self.output, read, write),
        }
    }
}

/// The cost of a finished request in micro-dollars (rounded to the nearest).
pub fn cost_micros(price: &Price, usage: &Usage, media: MediaUnits) -> u64 {
    let (input, output, read, write) = price.token_rates(usage.input_tokens);
    let cached = usage.cache_read_tokens.min(usage.input_tokens);
    let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
    let uncached = usage.input_tokens - cached - written;
    let tokens = |n: u64, p: u64| u128::from(n) * u128::from(p);
    // tokens × µ$/Mtok = pico-dollars.
    let pico = tokens(uncached, input)
        + tokens(cached, read)
        + tokens(written, write)
        + tokens(usage.output_tokens, output)
        + media_pico(price, media);
    pico_to_micros(pico)
}

/// The cost reserved at admission: every input token at the full input price (no cache
/// hit assumed) and the whole output cap, at the long-context tier when the input is long.
pub fn estimate_micros(price: &Price, input_tokens: u64, output_cap: u64, media: MediaUnits) -> u64 {
    let usage = Usage { input_tokens, output_tokens: output_cap, ..Usage::default() };
    let (input, output, _, _) = price.token_rates(input_tokens);
    let pico = u128::from(usage.input_tokens) * u128::from(input)
        + u128::from(usage.output_tokens) * u128::from(output)
        + media_pico(price, media);
    pico_to_micros(pico)
}

/// The price that applies to a request: the target's own, else the alias's, else the
/// shipped table's entry for the target model; `None` = unpriced (cost 0).
pub fn resolve(target: Option<&Pricing>, alias: Option<&Pricing>, target_model: &str) -> Option<Price> {
    target.or(alias).map(Price::from_config).or_else(|| PriceTable::shipped().lookup(target_model))
}

/// Micro-dollars as USD, for display only (usage lines, JSON answers).
pub fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Cost in USD from an optional `pricing:` block. Kept for the current usage-line writer;
/// new code calls [`resolve`], [`cost_micros`] and [`usd`].
pub fn cost_usd(pricing: Option<&Pricing>, usage: &Usage) -> f64 {
    pricing.map_or(0.0, |p| usd(cost_micros(&Price::from_config(p), usage, MediaUnits::default())))
}

fn media_pico(price: &Price, media: MediaUnits) -> u128 {
    let per = |units: f64, nanos: u64| -> u128 {
        let n = (units.max(0.0) * nanos as f64).round();
        if n.is_finite() {
            n as u128 * 1_000
        } else {
            0
        }
    };
    u128::from(media.images) * u128::from(price.per_image_nanos) * 1_000
        + per(media.audio_seconds, price.per_audio_second_nanos)
        + per(media.video_seconds, price.per_video_second_nanos)
}

fn pico_to_micros(pico: u128) -> u64 {
    u64::try_from((pico + 500_000) / 1_000_000).unwrap_or(u64::MAX)
}

fn usd_to_micros(usd: f64) -> u64 {
    crate::limits::usd_to_micros(usd)
}

fn usd_to_nanos(usd: f64) -> u64 {
    let n = (usd * 1e9).round();
    if n.is_finite() && n > 0.0 {
        n as u64
    } else {
        0
    }
}

// === impl PriceTable ===

impl PriceTable {
    /// The table shipped in `conf/prices.yaml`, parsed once. (Its parse is tested; should it
    /// ever fail, the table is empty and every lookup misses.)
    pub fn shipped() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            PriceTable::parse(SHIPPED).unwrap_or_else(|e| {
                tracing::error!(error = %e, "conf/prices.yaml (built in) does not parse; no shipped prices");
                PriceTable::default()
            })
        })
    }

    /// A table from YAML: `models: { <model id>: <pricing block> }`.
    pub fn parse(yaml: &str) -> Result<PriceTable, String> {
        let file: TableFile = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let models =
            file.models.iter().map(|(m, p)| (m.to_ascii_lowercase(), Price::from_config(p))).collect();
        Ok(PriceTable { models })
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Prices of `model`: the exact id first, then the id with what providers add around a
    /// model name taken off step by step — a `models/` or `vendor/` path, a Bedrock region
    /// (`us.`) and version (`-v1:0`), a vendor prefix (`anthropic.`), a date or version
    /// suffix (`-2024-08-06`, `-20241022`, `@20241022`, `-0613`, `-001`, `-preview-05-20`)
    /// or `-latest`.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let model = model.trim();
        // Lower-cased only when it has to be: no allocation for the usual lower-case name.
        let mut m = if model.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(model.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(model)
        };
        if let Some(p) = self.models.get(m.as_ref()) {
            return Some(*p);
        }
        let steps: [fn(&str) -> Option<&str>; 5] =
            [strip_path, strip_region, strip_bedrock_version, strip_vendor, strip_date];
        for step in steps {
            while let Some(shorter) = step(&m) {
                m = std::borrow::Cow::Owned(shorter.to_string());
                if let Some(p) = self.models.get(m.as_ref()) {
                    return Some(*p);
                }
            }
        }
        None
    }
}

fn strip_path(m: &str) -> Option<&str> {
    m.rsplit_once('/').map(|(_, name)| name)
}

fn strip_region(m: &str) -> Option<&str> {
    ["us.", "eu.", "apac.", "global.", "jp.", "au.", "us-gov."].iter().find_map(|p| m.strip_prefix(p))
}

/// `-v1:0`, `-v2`, `:0`.
fn strip_bedrock_version(m: &str) -> Option<&str> {
    if let Some((head, tail)) = m.rsplit_once(':') {
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            return Some(head);
        }
    }
    let (head, tail) = m.rsplit_once("-v")?;
    (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit())).then_some(head)
}

fn strip_vendor(m: &str) -> Option<&str> {
    ["anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.", "deepseek.", "google."]
        .iter()
        .find_map(|p| m.strip_prefix(p))
}

fn strip_date(m: &str) -> Option<&str> {
    if let Some(head) = m.strip_suffix("-latest") {
        return Some(head);
    }
    if let Some((head, tail)) = m.rsplit_once('@') {
        return all_digits(tail).then_some(head);
    }
    // -YYYY-MM-DD
    let b = m.as_bytes();
    if b.len() > 11 {
        let t = &b[b.len() - 11..];
        let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
        if t[0] == b'-'
            && t[5] == b'-'
            && t[8] == b'-'
            && digits(&t[1..5])
            && digits(&t[6..8])
            && digits(&t[9..])
        {
            return m.get(..m.len() - 11);
        }
    }
    // -preview-MM-DD / -exp-MM-DD
    for marker in ["-preview-", "-exp-"] {
        if let Some((head, tail)) = m.rsplit_once(marker) {
            if tail.len() == 5 && tail.as_bytes()[2] == b'-' {
                return Some(head);
            }
        }
    }
    // -YYYYMMDD, -0613, -001, -preview, -exp
    let (head, tail) = m.rsplit_once('-')?;
    ((all_digits(tail) && (3..=8).contains(&tail.len())) || tail == "preview" || tail == "exp")
        .then_some(head)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
#[path = "pricing_tests.rs"]
mod tests;
