//! Token counting: exact agreement with tiktoken-rs, what each inbound format counts, output
//! caps, and tokenizer families.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn reference(e: Encoding) -> &'static tiktoken_rs::CoreBPE {
    match e {
        Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
    }
}

fn ours(e: Encoding) -> &'static Bpe {
    vocabulary(e).unwrap_or_else(|err| panic!("{err}"))
}

const SAMPLES: &[&str] = &[
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. I'LL say they're right, it's fine; we'd've known.",
    "a  b   c\t\td \n\n  e   \r\n f  ",
    "trailing spaces   ",
    "   leading and \u{3000}\u{3000}ideographic spaces\u{3000}x",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{:?}\", x);\n}\n",
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":1024}",
    "数字1234567890和中文混合，日本語のテキストも。한국어 문장도 있습니다.",
    "emoji 🎉🎉 and combining e\u{301}\u{301} marks, ÀÉÎÕÜ ÿ Straße İstanbul",
    "=========================== ----------- /////// \\\\\\ ~~~~ !!!???",
    "path/to/file.rs:12:5 https://example.com/a/b?c=d&e=f#g",
    "MixedCASEWordsLikeHTTPServer and camelCaseIdentifiers snake_case_names",
    "<|endoftext|> is ordinary text here <|fim_prefix|>",
    "\n\n\n   \n\t\n",
    " \u{a0}\u{2028}\u{2009} odd whitespace\u{85}end",
    "x  \u{a0}y z\t\u{3000}w 5\u{663}\u{664} 12\u{663} 123\u{663} it'S THEY'RE we'Ve I'ſ o'\u{e9}",
    "end with newline and spaces \n  \n   ",
    ".Hello (World) 'quoted' \"json\": {\"a\": [1, 22, 333, 4444]}\r\n\r\n}/\n//comment\n",
    "\u{1}\u{2}ctrl\u{7f}DEL \u{b}\u{c}vt ff",
];

#[test]
fn counts_equal_tiktoken_on_varied_text() {
    for e in [Encoding::O200k, Encoding::Cl100k] {
        for s in SAMPLES {
            assert_eq!(ours(e).count(s), reference(e).encode_ordinary(s).len(), "{e:?} on {s:?}");
        }
    }
}

#[test]
fn long_pieces_use_the_heap_merge_and_still_agree() {
    let long_word = "abcdefghij".repeat(2_000); // one 20 KB piece
    let long_punct = "=-".repeat(5_000);
    let base64ish = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo".repeat(300);
    for e in [Encoding::O200k, Encoding::Cl100k] {
        for s in [&long_word, &long_punct, &base64ish] {
            assert_eq!(ours(e).count(s), reference(e).encode_ordinary(s).len(), "{e:?}");
        }
    }
}

fn alphabet() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'b', 'Z', 'é', 'ß', '中', '日', 'ア', '한', '1', '9', ' ', ' ', ' ', '\t', '\n', '\r',
        '\u{3000}', '\u{a0}', '\'', 's', 'L', '.', ',', '/', '=', '{', '"', '🎉', '\u{301}', '_', '-',
    ]);
    prop::collection::vec(chars, 0..120).prop_map(|v| v.into_iter().collect())
}

/// Mostly ASCII, to exercise the o200k fast path and its hand-over to the regex.
fn ascii_heavy() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'b', 'e', 'l', 'r', 's', 't', 'v', 'd', 'm', 'A', 'E', 'L', 'R', 'S', 'T', 'V', 'D', 'M', '0',
        '5', '9', ' ', ' ', ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{1}', '\u{7f}', '\'', '/', '.', '(',
        '{', '"', '-', '_', 'é', '\u{a0}', '\u{3000}', '٣', 'ſ', '中', '…',
    ]);
    prop::collection::vec(chars, 0..160).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn ascii_heavy_text_counts_equal_tiktoken(s in ascii_heavy()) {
        for e in [Encoding::O200k, Encoding::Cl100k] {
            prop_assert_eq!(ours(e).count(&s), reference(e).encode_ordinary(&s).len(), "{:?} on {:?}", e, s);
        }
    }

    #[test]
    fn random_text_counts_equal_tiktoken(s in alphabet()) {
        for e in [Encoding::O200k, Encoding::Cl100k] {
            prop_assert_eq!(ours(e).count(&s), reference(e).encode_ordinary(&s).len(), "{:?} on {:?}", e, s);
        }
    }
}

fn t(s: &str) -> u64 {
    count_text(s, TokenizerFamily::O200k)
}

fn frame(messages: u64) -> u64 {
    messages * TOKENS_PER_MESSAGE + REPLY_PRIMING
}

#[test]
fn openai_chat_counts_messages_tool_calls_and_tools() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}
        ],
        "tools": tools,
        "max_tokens": 100
    });
    let want = t("You are terse.")
        + t("Weather in Paris?")
        + t("get_weather")
        + t("{\"city\":\"Paris\"}")
        + t("18C and sunny")
        + t(&tools.to_string())
        + TOKENS_PER_MEDIA
        + frame(4);
    let got = count_request_tokens(Format::OpenAiChat, body.to_string().as_bytes(), TokenizerFamily::O200k);
    assert_eq!(got, want);
}

#[test]
fn openai_responses_counts_instructions_and_items() {
    let body = json!({
        "model": "gpt-5",
        "instructions": "Answer in French.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is Rust?"}]},
            {"type": "function_call", "call_id": "c1", "name": "search", "arguments": "{\"q\":\"rust\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "A language."},
            {"type": "reasoning", "encrypted_content": "gAAAAABo-very-long-opaque", "summary": []}
        ]
    });
    let want = t("Answer in French.")
        + t("What is Rust?")
        + t("search")
        + t("{\"q\":\"rust\"}")
        + t("A language.")
        + frame(5);
    assert_eq!(
        count_request_tokens(Format::OpenAiResponses, body.to_string().as_bytes(), TokenizerFamily::O200k),
        want
    );
    let plain = json!({"model": "gpt-5", "input": "Just a string"});
    assert_eq!(
        count_request_tokens(Format::OpenAiResponses, plain.to_string().as_bytes(), TokenizerFamily::O200k),
        t("Just a string") + frame(1)
    );
}

#[test]
fn anthropic_counts_system_blocks_tool_use_input_and_skips_base64() {
    let image = "A".repeat(100_000);
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Describe this."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Looking closely.", "signature": "EqQBCkYIARgCIkA"},
                {"type": "tool_use", "id": "toolu_1", "name": "zoom", "input": {"factor": 2}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "zoomed"}]}
        ]
    });
    let raw = t("Be brief.")
        + t("Describe this.")
        + t("Looking closely.")
        + t("zoom")
        + t("{\"factor\":2}")
        + t("zoomed");
    let want = raw + TOKENS_PER_MEDIA + frame(4);
    assert_eq!(
        count_request_tokens(Format::Anthropic, body.to_string().as_bytes(), TokenizerFamily::O200k),
        want
    );
    // The Claude estimate scales the text, not the framing.
    let claude =
        count_request_tokens(Format::Anthropic, body.to_string().as_bytes(), TokenizerFamily::Claude);
    assert_eq!(claude, (raw * CLAUDE_FACTOR_PERMILLE).div_ceil(1_000) + TOKENS_PER_MEDIA + frame(4));
}

#[test]
fn gemini_counts_system_instruction_parts_and_function_calls() {
    let body = json!({
        "systemInstruction": {"parts": [{"text": "You are a poet."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Write a haiku."}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "rhyme", "args": {"word": "moon"}}, "thoughtSignature": "c2lnbmF0dXJl"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "rhyme", "response": {"words": ["June"]}}}]}
        ],
        "generationConfig": {"maxOutputTokens": 256, "candidateCount": 2}
    });
    let want = t("You are a poet.")
        + t("Write a haiku.")
        + t("rhyme")
        + t("{\"word\":\"moon\"}")
        + t("rhyme")
        + t("{\"words\":[\"June\"]}")
        + TOKENS_PER_MEDIA
        + frame(4);
    assert_eq!(
        count_request_tokens(Format::Gemini, body.to_string().as_bytes(), TokenizerFamily::O200k),
        want
    );
    assert_eq!(output_cap(Format::Gemini, body.to_string().as_bytes()), Some(512));
}

#[test]
fn a_body_that_is_not_json_is_counted_as_text() {
    let body = b"not json at all, just words";
    assert_eq!(
        count_request_tokens(Format::OpenAiChat, body, TokenizerFamily::O200k),
        t("not json at all, just words")
    );
}

#[test]
fn output_caps_come_from_each_formats_field() {
    let cap = |f, v: serde_json::Value| output_cap(f, v.to_string().as_bytes());
    assert_eq!(cap(Format::OpenAiChat, json!({"max_tokens": 100})), Some(100));
    assert_eq!(
        cap(Format::OpenAiChat, json!({"max_completion_tokens": 300, "max_tokens": 100, "n": 3})),
        Some(900)
    );
    assert_eq!(cap(Format::OpenAiChat, json!({"messages": []})), None);
    assert_eq!(cap(Format::OpenAiResponses, json!({"max_output_tokens": 2048})), Some(2048));
    assert_eq!(cap(Format::Anthropic, json!({"max_tokens": 4096})), Some(4096));
    assert_eq!(cap(Format::Gemini, json!({"generation_config": {"max_output_tokens": 64}})), Some(64));
    assert_eq!(cap(Format::Gemini, json!({"contents": []})), None);
    assert_eq!(cap(Format::Bedrock, json!({"inferenceConfig": {"maxTokens": 512}})), Some(512));
    assert_eq!(output_cap(Format::Anthropic, b"{broken"), None);
}

#[test]
fn families_follow_provider_kind_and_model() {
    use TokenizerFamily::*;
    let f = TokenizerFamily::for_target;
    assert_eq!(f(ProviderKind::Openai, "gpt-4o-mini"), O200k);
    assert_eq!(f(ProviderKind::Openai, "gpt-4.1"), O200k);
    assert_eq!(f(ProviderKind::Openai, "gpt-5"), O200k);
    assert_eq!(f(ProviderKind::Openai, "o3-mini"), O200k);
    assert_eq!(f(ProviderKind::Openai, "some-future-model"), O200k);
    assert_eq!(f(ProviderKind::Openai, "gpt-4-turbo"), Cl100k);
    assert_eq!(f(ProviderKind::AzureOpenai, "gpt-35-turbo"), Cl100k);
    assert_eq!(f(ProviderKind::Openai, "text-embedding-3-small"), Cl100k);
    assert_eq!(f(ProviderKind::Anthropic, "claude-3-5-haiku-latest"), Claude);
    assert_eq!(f(ProviderKind::Bedrock, "anthropic.claude-sonnet-4-5-v1:0"), Claude);
    assert_eq!(f(ProviderKind::Bedrock, "amazon.nova-pro-v1:0"), Other);
    assert_eq!(f(ProviderKind::Gemini, "gemini-2.5-pro"), Gemini);
    assert_eq!(f(ProviderKind::OpenaiCompatible, "meta-llama/Llama-3.1-8B"), Other);
    assert_eq!(f(ProviderKind::OpenaiCompatible, "gpt-oss-20b"), O200k);
    assert_eq!(f(ProviderKind::OpenaiCompatible, "gemma-3-27b"), Gemini);
}

#[test]
fn warm_loads_both_vocabularies() {
    assert_eq!(warm(), Ok(()));
    assert_eq!(count_text("hello world", TokenizerFamily::Cl100k), 2);
    assert_eq!(count_text("hello world", TokenizerFamily::O200k), 2);
}

#[test]
fn input_and_cap_parses_once_and_agrees_with_the_separate_counts() {
    let bodies: [(Format, &[u8]); 4] = [
        (Format::OpenAiChat, br#"{"model":"m","max_tokens":77,"n":2,"messages":[{"role":"user","content":"Hello there, how are you?"}]}"#),
        (Format::Anthropic, br#"{"model":"m","max_tokens":300,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#),
        (Format::Gemini, br#"{"contents":[{"role":"user","parts":[{"text":"hi there"}]}],"generationConfig":{"maxOutputTokens":64}}"#),
        (Format::OpenAiChat, b"not json at all"),
    ];
    for (format, body) in bodies {
        let family = TokenizerFamily::O200k;
        assert_eq!(
            input_and_cap(format, body, family),
            (count_request_tokens(format, body, family), output_cap(format, body)),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn model_ids_are_matched_whatever_their_case() {
    use crate::config::ProviderKind;
    for (model, family) in [
        ("GPT-4-0613", TokenizerFamily::Cl100k),
        ("gpt-4o-mini", TokenizerFamily::O200k),
        ("Claude-3", TokenizerFamily::Claude),
    ] {
        let kind = if family == TokenizerFamily::Claude {
            ProviderKind::OpenaiCompatible
        } else {
            ProviderKind::Openai
        };
        assert_eq!(TokenizerFamily::for_target(kind, model), family, "{model}");
    }
    assert_eq!(
        TokenizerFamily::for_target(ProviderKind::Bedrock, "US.Anthropic.claude-x"),
        TokenizerFamily::Claude
    );
}

/// The tree path of `input_and_cap` for an OpenAI chat body (the streaming path must agree).
fn tree_input_and_cap(body: &[u8], family: TokenizerFamily) -> (u64, Option<u64>) {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => {
            (count_value_tokens(Format::OpenAiChat, &m, family), output_cap_value(Format::OpenAiChat, &m))
        }
        _ => (count_text(&String::from_utf8_lossy(body), family), None),
    }
}

#[test]
fn the_streaming_chat_count_equals_the_tree_count() {
    let bodies = [
        json!({"model": "m", "messages": [{"role": "user", "content": "Say something short."}], "temperature": 0.2}),
        json!({"model": "m", "max_tokens": 50, "max_completion_tokens": 70, "n": 3, "messages": [
            {"role": "system", "content": "You are terse.\nAnswer in \"quotes\" \u{e9}\u{1F600}."},
            {"role": "user", "content": [{"type": "text", "text": "what is here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
        json!({"model": "m", "max_tokens": -5, "n": 0, "messages": "just a string"}),
        json!({"model": "m", "max_tokens": 10.0, "messages": {"role": "user", "content": "an object"}, "functions": "text"}),
        json!({"model": "m", "messages": null, "tools": null}),
        json!({"model": "m", "messages": [1, true, null, [{"input": {"b": 1, "a": [2, 3]}}]]}),
    ];
    for b in bodies {
        let body = serde_json::to_vec(&b).unwrap();
        for family in [TokenizerFamily::O200k, TokenizerFamily::Cl100k, TokenizerFamily::Claude] {
            assert_eq!(
                input_and_cap(Format::OpenAiChat, &body, family),
                tree_input_and_cap(&body, family),
                "{b}"
            );
        }
    }
    // Not an object, not JSON, trailing bytes: the general path's answer.
    for body in [&b"[1,2]"[..], b"not json", b"{\"messages\":[]} x", b""] {
        assert_eq!(
            input_and_cap(Format::OpenAiChat, body, TokenizerFamily::O200k),
            tree_input_and_cap(body, TokenizerFamily::O200k),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0.0f64..1e6).prop_map(|f| json!(f)),
        "[a-z \\\\\"é😀\n]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("role".to_string()),
            Just("content".to_string()),
            Just("text".to_string()),
            Just("image_url".to_string()),
            Just("arguments".to_string()),
            Just("input".to_string()),
            Just("parameters".to_string()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn streaming_and_tree_counts_agree_on_any_chat_shaped_body(
        messages in json_value(),
        tools in json_value(),
        cap in prop_oneof![Just(Value::Null), any::<u32>().prop_map(|n| json!(n)), Just(json!(-3)), Just(json!(2.5))],
        n in prop_oneof![Just(Value::Null), (0u32..5).prop_map(|n| json!(n))],
    ) {
        let body = serde_json::to_vec(&json!({"model": "m", "messages": messages, "tools": tools, "max_tokens": cap, "n": n})).unwrap();
        prop_assert_eq!(
            input_and_cap(Format::OpenAiChat, &body, TokenizerFamily::O200k),
            tree_input_and_cap(&body, TokenizerFamily::O200k)
        );
    }
}
