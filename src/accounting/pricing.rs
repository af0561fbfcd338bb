//! Cost of a request from the alias's pricing (USD per million tokens).

use crate::config::Pricing;
use crate::formats::Usage;

/// Cost in USD; 0 when the alias has no pricing.
pub fn cost_usd(pricing: Option<&Pricing>, usage: &Usage) -> f64 {
    match pricing {
        Some(p) => {
            (usage.input_tokens as f64 * p.input_per_mtok + usage.output_tokens as f64 * p.output_per_mtok)
                / 1e6
        }
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_per_million_tokens() {
        let p: Pricing = serde_json::from_str(r#"{"input_per_mtok":0.15,"output_per_mtok":0.60}"#).unwrap();
        let u = Usage { input_tokens: 1_000_000, output_tokens: 500_000, ..Usage::default() };
        assert!((cost_usd(Some(&p), &u) - 0.45).abs() < 1e-12);
        assert_eq!(cost_usd(None, &u), 0.0);
    }
}
