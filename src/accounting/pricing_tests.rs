//! Pricing: usage shapes of each provider (after decoding to the IR), tiers, media, the
//! shipped table and its lookup.

use super::*;
use crate::config::Pricing;

fn pricing(v: serde_json::Value) -> Pricing {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn shipped(model: &str) -> Price {
    PriceTable::shipped().lookup(model).unwrap_or_else(|| panic!("{model} not in the shipped table"))
}

#[test]
fn config_prices_become_fixed_point() {
    let p = Price::from_config(&pricing(serde_json::json!({
        "input_per_mtok": 0.15, "output_per_mtok": 0.60, "cached_input_per_mtok": 0.075,
        "cache_write_per_mtok": 0.1875, "above_200k": {"input_per_mtok": 0.30, "output_per_mtok": 1.20},
        "per_image": 0.04, "per_audio_second": 0.0001, "per_video_second": 0.10
    })));
    assert_eq!(
        (p.input, p.output, p.cached_input, p.cache_write),
        (150_000, 600_000, Some(75_000), Some(187_500))
    );
    assert_eq!(p.above_200k, Some(Tier { input: 300_000, output: 1_200_000, cached_input: None }));
    assert_eq!(
        (p.per_image_nanos, p.per_audio_second_nanos, p.per_video_second_nanos),
        (40_000_000, 100_000, 100_000_000)
    );
}

#[test]
fn openai_usage_bills_cached_prompt_tokens_at_the_cached_price() {
    // prompt_tokens 10,000 of which cached_tokens 4,000; completion 1,000 with 200 reasoning.
    let u = Usage {
        input_tokens: 10_000,
        output_tokens: 1_000,
        cache_read_tokens: 4_000,
        reasoning_tokens: 200,
        ..Usage::default()
    };
    // 6,000 × $2.50 + 4,000 × $1.25 + 1,000 × $10 per million = $0.015 + $0.005 + $0.010.
    assert_eq!(cost_micros(&shipped("gpt-4o-2024-08-06"), &u, MediaUnits::default()), 30_000);
}

#[test]
fn anthropic_usage_bills_cache_reads_and_writes_apart_from_input() {
    // Anthropic reported input_tokens 1,000 (uncached), cache_read 20,000, cache_creation 5,000:
    // the IR's input_tokens is their sum, 26,000.
    let u = Usage {
        input_tokens: 26_000,
        output_tokens: 500,
        cache_read_tokens: 20_000,
        cache_write_tokens: 5_000,
        reasoning_tokens: 0,
    };
    // 1,000 × $3 + 20,000 × $0.30 + 5,000 × $3.75 + 500 × $15 per million.
    assert_eq!(
        cost_micros(&shipped("claude-sonnet-4-5-20250929"), &u, MediaUnits::default()),
        3_000 + 6_000 + 18_750 + 7_500
    );
}

#[test]
fn gemini_usage_bills_thoughts_once_as_output() {
    // promptTokenCount 10,000 with cachedContentTokenCount 8,000; candidates 300 + thoughts 700.
    let u = Usage {
        input_tokens: 10_000,
        output_tokens: 1_000,
        cache_read_tokens: 8_000,
        reasoning_tokens: 700,
        ..Usage::default()
    };
    // 2,000 × $0.30 + 8,000 × $0.03 + 1,000 × $2.50 per million = 600 + 240 + 2,500 µ$.
    assert_eq!(cost_micros(&shipped("models/gemini-2.5-flash"), &u, MediaUnits::default()), 3_340);
}

#[test]
fn without_a_cache_price_cached_tokens_bill_as_input() {
    let p = Price::from_config(&pricing(serde_json::json!({"input_per_mtok": 1.0, "output_per_mtok": 2.0})));
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 0,
        cache_read_tokens: 600_000,
        cache_write_tokens: 100_000,
        ..Usage::default()
    };
    assert_eq!(cost_micros(&p, &u, MediaUnits::default()), 1_000_000);
}

#[test]
fn the_long_context_tier_prices_the_whole_request() {
    let p = shipped("claude-sonnet-4-5");
    let at = |input: u64, cached: u64| {
        cost_micros(
            &p,
            &Usage {
                input_tokens: input,
                output_tokens: 1_000,
                cache_read_tokens: cached,
                ..Usage::default()
            },
            MediaUnits::default(),
        )
    };
    // Exactly 200k: base prices. 200,000 × $3 + 1,000 × $15.
    assert_eq!(at(200_000, 0), 600_000 + 15_000);
    // 250k: every token at the tier. 250,000 × $6 + 1,000 × $22.50.
    assert_eq!(at(250_000, 0), 1_500_000 + 22_500);
    // Tier cache reads at the tier's cached price: 50,000 × $6 + 200,000 × $0.60 + 1,000 × $22.50.
    assert_eq!(at(250_000, 200_000), 300_000 + 120_000 + 22_500);
    // A tier without a cached price scales the base one like the input (×2 here).
    let q = Price::from_config(&pricing(serde_json::json!({
        "input_per_mtok": 1.0, "output_per_mtok": 1.0, "cached_input_per_mtok": 0.1,
        "above_200k": {"input_per_mtok": 2.0, "output_per_mtok": 2.0}
    })));
    let u = Usage { input_tokens: 1_000_000, cache_read_tokens: 1_000_000, ..Usage::default() };
    assert_eq!(cost_micros(&q, &u, MediaUnits::default()), 200_000);
    // The admission estimate uses the tier too (a reservation at base rates would cover half).
    assert_eq!(estimate_micros(&p, 250_000, 1_000, MediaUnits::default()), 1_522_500);
    assert_eq!(estimate_micros(&p, 100_000, 1_000, MediaUnits::default()), 315_000);
}

#[test]
fn media_units_are_priced_per_image_and_second() {
    let p = Price::from_config(&pricing(
        serde_json::json!({"per_image": 0.04, "per_audio_second": 0.0001, "per_video_second": 0.10}),
    ));
    let m = MediaUnits { images: 3, audio_seconds: 12.5, video_seconds: 8.0 };
    assert_eq!(cost_micros(&p, &Usage::default(), m), 120_000 + 1_250 + 800_000);
    assert_eq!(
        cost_micros(
            &shipped("whisper-1"),
            &Usage::default(),
            MediaUnits { audio_seconds: 60.0, ..MediaUnits::default() }
        ),
        6_000
    );
}

#[test]
fn costs_round_to_the_nearest_micro_dollar_once() {
    let p = shipped("gpt-4o-mini");
    // 10 tokens × $0.15/M = 1.5 µ$ → 2; 3 tokens = 0.45 µ$ → 0.
    assert_eq!(cost_micros(&p, &Usage { input_tokens: 10, ..Usage::default() }, MediaUnits::default()), 2);
    assert_eq!(cost_micros(&p, &Usage { input_tokens: 3, ..Usage::default() }, MediaUnits::default()), 0);
    assert!((usd(1_522_500) - 1.5225).abs() < 1e-12);
}

#[test]
fn the_shipped_table_parses_and_covers_each_provider() {
    let t = PriceTable::shipped();
    assert!(t.len() >= 40, "only {} models", t.len());
    for m in [
        "gpt-5",
        "gpt-4o-mini",
        "o3",
        "claude-opus-4-5",
        "claude-haiku-4-5",
        "gemini-2.5-pro",
        "amazon.nova-pro",
    ] {
        assert!(t.lookup(m).is_some(), "{m}");
    }
    assert!(PriceTable::parse("models: { x: { input_per_mtok: 1, bogus: 2 } }").is_err());
}

#[test]
fn lookup_strips_dates_paths_regions_and_versions() {
    let t = PriceTable::shipped();
    let input = |m: &str| t.lookup(m).map(|p| p.input);
    assert_eq!(input("gpt-4o-2024-08-06"), Some(2_500_000));
    assert_eq!(input("gpt-4o-mini-2024-07-18"), Some(150_000));
    assert_eq!(input("GPT-4O"), Some(2_500_000));
    assert_eq!(input("gpt-3.5-turbo-0125"), Some(500_000));
    assert_eq!(input("claude-3-5-haiku-latest"), Some(800_000));
    assert_eq!(input("claude-3-5-sonnet-20241022"), Some(3_000_000));
    assert_eq!(input("claude-opus-4-1@20250805"), Some(15_000_000));
    assert_eq!(input("us.anthropic.claude-sonnet-4-5-20250929-v1:0"), Some(3_000_000));
    assert_eq!(input("anthropic.claude-3-haiku-20240307-v1:0"), Some(250_000));
    assert_eq!(input("amazon.nova-lite-v1:0"), Some(60_000));
    assert_eq!(input("meta.llama3-1-8b-instruct-v1:0"), Some(220_000));
    assert_eq!(input("models/gemini-2.5-flash"), Some(300_000));
    assert_eq!(input("gemini-2.5-flash-preview-05-20"), Some(300_000));
    assert_eq!(input("gemini-1.5-pro-002"), Some(1_250_000));
    assert_eq!(input("openai/gpt-4.1-mini"), Some(400_000));
    // Close names do not collide.
    assert_eq!(input("gpt-4"), Some(30_000_000));
    assert_eq!(input("o3-mini"), Some(1_100_000));
    assert_eq!(input("my-finetune"), None);
    assert_eq!(input("gpt4o-mini-deploy"), None);
}

#[test]
fn resolution_prefers_target_then_alias_then_the_table() {
    let target = pricing(serde_json::json!({"input_per_mtok": 1.0, "output_per_mtok": 1.0}));
    let alias = pricing(serde_json::json!({"input_per_mtok": 2.0, "output_per_mtok": 2.0}));
    assert_eq!(resolve(Some(&target), Some(&alias), "gpt-4o").map(|p| p.input), Some(1_000_000));
    assert_eq!(resolve(None, Some(&alias), "gpt-4o").map(|p| p.input), Some(2_000_000));
    assert_eq!(resolve(None, None, "gpt-4o").map(|p| p.input), Some(2_500_000));
    assert_eq!(resolve(None, None, "llama-local"), None);
}

#[test]
fn the_legacy_usd_helper_agrees_with_micros() {
    let p = pricing(serde_json::json!({"input_per_mtok": 0.15, "output_per_mtok": 0.60}));
    let u = Usage { input_tokens: 1_000_000, output_tokens: 500_000, ..Usage::default() };
    assert!((cost_usd(Some(&p), &u) - 0.45).abs() < 1e-12);
    assert_eq!(cost_usd(None, &u), 0.0);
}
