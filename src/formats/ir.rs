//! The canonical intermediate representation every wire format decodes into and encodes from.
//! Plain data only: no I/O, no serde wire shapes (those live in each format's file).
//!
//! Conventions
//! - A request is one `ChatRequest`; system/developer prompts are hoisted into `system`.
//! - Tool-call arguments are kept as the raw JSON *text* the model produced (OpenAI style);
//!   formats that want an object parse it (see `tool_arguments_to_value`).
//! - Opaque provider tokens (Anthropic thinking signatures, Gemini `thought_signature`)
//!   are carried verbatim so they can be echoed back on a later turn.
//! - `extra` holds top-level request fields the decoder did not model; an encoder of the
//!   *same* format may write them back, other encoders ignore them.

use serde_json::{Map, Value};

/// Which wire format a body or stream is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
    /// AWS Bedrock Converse / ConverseStream (event-stream framing on the stream side).
    Bedrock,
}

impl Format {
    pub const fn name(self) -> &'static str {
        match self {
            Format::OpenAiChat => "openai_chat",
            Format::OpenAiResponses => "openai_responses",
            Format::Anthropic => "anthropic",
            Format::Gemini => "gemini",
            Format::Bedrock => "bedrock",
        }
    }
}

// === Request ===

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatRequest {
    /// The model named by the client (the gateway alias); encoders write `RequestOptions::target_model` instead.
    pub model: String,
    /// System / developer prompts and Responses `instructions`, in order.
    pub system: Vec<SystemPart>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    /// The provider's own web search, asked for as a built-in tool (Responses `web_search`):
    /// Anthropic's web search tool, Gemini's Google Search grounding; no other target has one.
    pub web_search: Option<WebSearch>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub sampling: Sampling,
    /// Max output tokens (OpenAI max_tokens/max_completion_tokens, Responses max_output_tokens,
    /// Anthropic max_tokens, Gemini maxOutputTokens, Bedrock maxTokens).
    pub max_tokens: Option<u32>,
    pub stream: bool,
    /// The client asked for a usage chunk in the stream (OpenAI `stream_options.include_usage`).
    pub include_usage: bool,
    pub response_format: Option<ResponseFormat>,
    pub reasoning: Option<Reasoning>,
    /// End-user id (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// Unmodelled top-level fields of the inbound body.
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemPart {
    pub text: String,
    /// Anthropic `cache_control`, carried opaquely.
    pub cache_control: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One turn. Tool results are `Part::ToolResult` inside a `User` turn (Anthropic's model);
/// OpenAI `role: tool` messages decode into that and encode back out of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text {
        text: String,
        cache_control: Option<Value>,
    },
    Image(ImageSource),
    ToolCall(ToolCall),
    ToolResult(ToolResult),
    /// Anthropic `thinking` / OpenAI-compatible `reasoning_content` / Gemini `thought` text.
    Thinking {
        text: String,
        signature: Option<String>,
    },
    /// Anthropic `redacted_thinking` (opaque data).
    RedactedThinking {
        data: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    Url(String),
    Base64 { media_type: String, data: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Raw JSON text of the arguments object ("" means no arguments = `{}`).
    pub arguments: String,
    /// Gemini `thought_signature` on a functionCall part, carried opaquely.
    pub signature: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    /// Function name when known (Gemini matches results by name).
    pub name: Option<String>,
    /// Text and image parts only.
    pub content: Vec<Part>,
    pub is_error: bool,
}

/// A server-side web search the model may run (what every provider that has one accepts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebSearch {
    /// Only these domains (Responses `filters.allowed_domains`).
    pub allowed_domains: Vec<String>,
    /// `{type: approximate, city, region, country, timezone}` (the same shape at OpenAI and
    /// Anthropic).
    pub user_location: Option<Value>,
}

impl WebSearch {
    /// The refusal for a target that has no server-side search.
    pub fn unsupported(target: &str) -> super::TranslateError {
        super::TranslateError::Unsupported(format!(
            "the `web_search` tool: {target} targets have no server-side web search (Anthropic and Gemini do)"
        ))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object (as sent by the client; sanitised per provider on encode).
    pub parameters: Value,
    pub strict: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`, Gemini `ANY`).
    Required,
    /// The model must call this tool.
    Tool(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// OpenAI `n` (choices); only 1 is portable.
    pub n: Option<u32>,
    pub logprobs: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { name: String, schema: Value, strict: Option<bool> },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reasoning {
    /// OpenAI `reasoning_effort` / Responses `reasoning.effort`: "low" | "medium" | "high" | ...
    pub effort: Option<String>,
    /// Anthropic `thinking.budget_tokens` / Gemini `thinkingConfig.thinkingBudget`.
    pub budget_tokens: Option<u32>,
}

// === Response ===

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    /// The concrete model that answered.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// The assistant's output parts (text, tool calls, thinking), in order.
    pub content: Vec<Part>,
    pub finish: FinishReason,
    pub usage: Usage,
}

/// One table maps every provider's stop reasons onto these (see `finish_reason.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FinishReason {
    #[default]
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// The upstream reported an error as its finish (Gemini `OTHER`, Bedrock errors).
    Error,
}

/// Token usage. `input_tokens` counts every prompt token, cached ones included (as OpenAI's
/// `prompt_tokens` and Gemini's `promptTokenCount` do); decoders of formats that report cache
/// reads and writes separately (Anthropic, Bedrock) add them, and encoders subtract them again.
/// In streams, a `StreamEvent::Usage` carries the *latest known totals*
/// (fields already known stay as they were when a later event leaves them `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens served from cache (OpenAI cached_tokens, Anthropic cache_read_input_tokens,
    /// Gemini cachedContentTokenCount, Bedrock cacheReadInputTokens).
    pub cache_read_tokens: u64,
    /// Anthropic cache_creation_input_tokens, Bedrock cacheWriteInputTokens.
    pub cache_write_tokens: u64,
    /// Reasoning tokens (OpenAI reasoning_tokens, Gemini thoughtsTokenCount); included in output_tokens.
    pub reasoning_tokens: u64,
}

// === Stream ===

/// What a stream decoder yields and a stream encoder consumes, one upstream event at a time.
/// Grammar (enforced by the encoders and checked in tests):
/// `Start` first; then any of the deltas; `Finish` once; `Usage` anywhere after `Start`;
/// `Error` may end a stream at any point.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
    },
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        text: String,
    },
    /// Signature of the current thinking block (Anthropic `signature_delta`).
    ThinkingSignature {
        signature: String,
    },
    /// A new tool call. `index` is the tool call's ordinal in this response (0, 1, ...).
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
        signature: Option<String>,
    },
    /// A fragment of the arguments JSON text of tool call `index`.
    ToolArgsDelta {
        index: u32,
        fragment: String,
    },
    Usage(Usage),
    Finish(FinishReason),
    /// An upstream error inside a stream that already started.
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// Error classes every format can express (mapped to each envelope's type/code/status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    PermissionDenied,
    NotFound,
    RequestTooLarge,
    RateLimited,
    BudgetExceeded,
    Overloaded,
    UpstreamTimeout,
    UpstreamError,
    Internal,
}
