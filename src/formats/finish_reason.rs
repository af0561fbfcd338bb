//! The one table mapping every wire format's stop/finish reason names onto `FinishReason`.
//! Decoders call `decode`, encoders call `encode`; nothing else in `formats/` spells a reason.

use super::{FinishReason, Format};

use FinishReason::*;

/// `(format, wire name, meaning)`. For `encode`, the FIRST row of a (format, reason) pair wins.
/// Unknown names decode to `Stop` (a stream that ends without a reason also means `Stop`).
const TABLE: &[(Format, &str, FinishReason)] = &[
    // OpenAI Chat Completions.
    (Format::OpenAiChat, "stop", Stop),
    (Format::OpenAiChat, "length", Length),
    (Format::OpenAiChat, "tool_calls", ToolCalls),
    (Format::OpenAiChat, "content_filter", ContentFilter),
    (Format::OpenAiChat, "function_call", ToolCalls),
    // OpenAI has no error finish; an errored choice ends as `stop`.
    (Format::OpenAiChat, "stop", Error),
    // OpenAI Responses: `incomplete_details.reason` (or `completed`).
    (Format::OpenAiResponses, "completed", Stop),
    (Format::OpenAiResponses, "max_output_tokens", Length),
    (Format::OpenAiResponses, "completed", ToolCalls),
    (Format::OpenAiResponses, "content_filter", ContentFilter),
    (Format::OpenAiResponses, "failed", Error),
    // Anthropic Messages.
    (Format::Anthropic, "end_turn", Stop),
    (Format::Anthropic, "stop_sequence", Stop),
    (Format::Anthropic, "pause_turn", Stop),
    (Format::Anthropic, "max_tokens", Length),
    (Format::Anthropic, "model_context_window_exceeded", Length),
    (Format::Anthropic, "tool_use", ToolCalls),
    (Format::Anthropic, "refusal", ContentFilter),
    (Format::Anthropic, "end_turn", Error),
    // Gemini `finishReason` (it says STOP even after function calls; its decoder derives ToolCalls).
    (Format::Gemini, "STOP", Stop),
    (Format::Gemini, "FINISH_REASON_UNSPECIFIED", Stop),
    (Format::Gemini, "MAX_TOKENS", Length),
    (Format::Gemini, "STOP", ToolCalls),
    (Format::Gemini, "SAFETY", ContentFilter),
    (Format::Gemini, "RECITATION", ContentFilter),
    (Format::Gemini, "BLOCKLIST", ContentFilter),
    (Format::Gemini, "PROHIBITED_CONTENT", ContentFilter),
    (Format::Gemini, "SPII", ContentFilter),
    (Format::Gemini, "IMAGE_SAFETY", ContentFilter),
    (Format::Gemini, "LANGUAGE", ContentFilter),
    (Format::Gemini, "OTHER", Error),
    (Format::Gemini, "MALFORMED_FUNCTION_CALL", Error),
    (Format::Gemini, "UNEXPECTED_TOOL_CALL", Error),
    // Bedrock Converse `stopReason`.
    (Format::Bedrock, "end_turn", Stop),
    (Format::Bedrock, "stop_sequence", Stop),
    (Format::Bedrock, "max_tokens", Length),
    (Format::Bedrock, "model_context_window_exceeded", Length),
    (Format::Bedrock, "tool_use", ToolCalls),
    (Format::Bedrock, "guardrail_intervened", ContentFilter),
    (Format::Bedrock, "content_filtered", ContentFilter),
    (Format::Bedrock, "end_turn", Error),
];

/// The meaning of wire name `name` in `format`; unknown names are `Stop`.
pub fn decode(format: Format, name: &str) -> FinishReason {
    TABLE.iter().find(|(f, n, _)| *f == format && *n == name).map_or(Stop, |(_, _, r)| *r)
}

/// The wire name for `reason` in `format`.
pub fn encode(format: Format, reason: FinishReason) -> &'static str {
    TABLE.iter().find(|(f, _, r)| *f == format && *r == reason).map_or("stop", |(_, n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Format; 5] =
        [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini, Format::Bedrock];
    const REASONS: [FinishReason; 5] = [Stop, Length, ToolCalls, ContentFilter, Error];

    #[test]
    fn every_format_can_encode_every_reason() {
        for f in ALL {
            for r in REASONS {
                assert!(TABLE.iter().any(|(tf, _, tr)| *tf == f && *tr == r), "{f:?} {r:?}");
            }
        }
    }

    #[test]
    fn anthropic_names_map_as_documented() {
        assert_eq!(decode(Format::Anthropic, "pause_turn"), Stop);
        assert_eq!(decode(Format::Anthropic, "max_tokens"), Length);
        assert_eq!(decode(Format::Anthropic, "tool_use"), ToolCalls);
        assert_eq!(decode(Format::Anthropic, "refusal"), ContentFilter);
        assert_eq!(encode(Format::Anthropic, ToolCalls), "tool_use");
        assert_eq!(encode(Format::OpenAiChat, Length), "length");
    }

    #[test]
    fn unknown_names_mean_stop() {
        assert_eq!(decode(Format::OpenAiChat, "whatever"), Stop);
    }

    #[test]
    fn encode_then_decode_is_stable_for_the_primary_names() {
        for f in ALL {
            for r in [Stop, Length, ContentFilter] {
                assert_eq!(decode(f, encode(f, r)), r, "{f:?} {r:?}");
            }
        }
    }
}
