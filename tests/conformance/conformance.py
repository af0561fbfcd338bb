"""Drive the official OpenAI, Anthropic and Google GenAI Python SDKs through the gateway, for every
inbound API x upstream kind, stream and non-stream, text and tool call, plus the Google SDK's
count_tokens, embed_content and models.list/get, and print a pass table.

Each client is made with its default settings plus only the base URL and the key (no retries,
timeout or api_version override): what a new user writes.

Run by tests/conformance.rs (which starts the Rust mock upstreams and the gateway), with
GATEWAY_URL and GATEWAY_KEY in the environment. Exit status 1 if any cell fails.
"""
import json
import os
import sys
import traceback
import urllib.request
from importlib.metadata import version

import anthropic
import openai
from google import genai
from google.genai import errors as gerrors
from google.genai import types as gtypes

URL = os.environ["GATEWAY_URL"]
KEY = os.environ["GATEWAY_KEY"]
SDK_VERSIONS = {p: version(p) for p in ("openai", "anthropic", "google-genai")}
UPSTREAMS = ["openai", "anthropic", "gemini", "bedrock"]
TOOL_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PROMPT = "What is the weather in Paris?"

oa = openai.OpenAI(base_url=URL + "/v1", api_key=KEY)
an = anthropic.Anthropic(base_url=URL, api_key=KEY)
gg = genai.Client(api_key=KEY, http_options=gtypes.HttpOptions(base_url=URL))


def expect_text(text, up):
    assert text == f"Hello from {up}", f"text was {text!r}"


def expect_call(name, args):
    if isinstance(args, str):
        args = json.loads(args)
    assert name == "get_weather", f"tool name was {name!r}"
    assert args == {"city": "Paris"}, f"tool arguments were {args!r}"


# --- OpenAI Chat Completions -------------------------------------------------------------------
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": TOOL_PARAMS}}]


def chat(up, stream, tool):
    kw = dict(model=f"to-{up}", messages=[{"role": "user", "content": PROMPT}])
    if tool:
        kw["tools"] = CHAT_TOOLS
    if not stream:
        r = oa.chat.completions.create(**kw)
        m = r.choices[0].message
        assert r.usage and r.usage.prompt_tokens > 0, f"usage was {r.usage}"
        if tool:
            assert r.choices[0].finish_reason == "tool_calls", r.choices[0].finish_reason
            expect_call(m.tool_calls[0].function.name, m.tool_calls[0].function.arguments)
        else:
            expect_text(m.content, up)
        return
    text, calls, finish, usage = "", {}, None, None
    for ch in oa.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            d = c.delta
            text += d.content or ""
            for tc in d.tool_calls or []:
                e = calls.setdefault(tc.index, {"name": "", "args": ""})
                if tc.function and tc.function.name:
                    e["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    e["args"] += tc.function.arguments
            finish = c.finish_reason or finish
    assert usage and usage.prompt_tokens > 0, f"no usage chunk: {usage}"
    if tool:
        assert finish == "tool_calls", finish
        expect_call(calls[0]["name"], calls[0]["args"])
    else:
        assert finish == "stop", finish
        expect_text(text, up)


# --- OpenAI Responses ----------------------------------------------------------------------------
RESP_TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "parameters": TOOL_PARAMS}]


def responses(up, stream, tool):
    kw = dict(model=f"to-{up}", input=PROMPT)
    if tool:
        kw["tools"] = RESP_TOOLS
    if not stream:
        r = oa.responses.create(**kw)
    else:
        r = None
        with oa.responses.stream(**kw) as s:
            for _ in s:
                pass
            r = s.get_final_response()
    assert r.usage and r.usage.input_tokens > 0, f"usage was {r.usage}"
    if tool:
        calls = [o for o in r.output if o.type == "function_call"]
        assert calls, f"no function_call in {r.output}"
        expect_call(calls[0].name, calls[0].arguments)
    else:
        expect_text(r.output_text, up)


# --- Anthropic Messages --------------------------------------------------------------------------
ANT_TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": TOOL_PARAMS}]


def messages(up, stream, tool):
    kw = dict(model=f"to-{up}", max_tokens=256, messages=[{"role": "user", "content": PROMPT}])
    if tool:
        kw["tools"] = ANT_TOOLS
    if not stream:
        m = an.messages.create(**kw)
    else:
        with an.messages.stream(**kw) as s:
            for _ in s:
                pass
            m = s.get_final_message()
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"usage was {m.usage}"
    if tool:
        assert m.stop_reason == "tool_use", m.stop_reason
        uses = [b for b in m.content if b.type == "tool_use"]
        assert uses, f"no tool_use in {m.content}"
        expect_call(uses[0].name, uses[0].input)
    else:
        assert m.stop_reason == "end_turn", m.stop_reason
        expect_text("".join(b.text for b in m.content if b.type == "text"), up)


# --- Gemini ----------------------------------------------------------------------------------------
def gemini(up, stream, tool):
    cfg = None
    if tool:
        cfg = gtypes.GenerateContentConfig(
            tools=[gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(name="get_weather", description="Weather for a city", parameters=TOOL_PARAMS)])],
            automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
        )
    if not stream:
        r = gg.models.generate_content(model=f"to-{up}", contents=PROMPT, config=cfg)
        chunks = [r]
    else:
        chunks = list(gg.models.generate_content_stream(model=f"to-{up}", contents=PROMPT, config=cfg))
        # The SDK would also accept one JSON object; check the wire is really a stream.
        body = json.dumps({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}).encode()
        req = urllib.request.Request(f"{URL}/v1beta/models/to-{up}:streamGenerateContent?alt=sse", data=body,
                                     headers={"x-goog-api-key": KEY, "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=20) as raw:
            ctype, text = raw.headers["content-type"], raw.read().decode()
        assert ctype.startswith("text/event-stream"), ctype
        assert text.startswith("data: "), text[:80]
    assert any(c.usage_metadata and c.usage_metadata.prompt_token_count for c in chunks), "no usageMetadata"
    if tool:
        calls = [fc for c in chunks for fc in (c.function_calls or [])]
        assert calls, "no functionCall"
        expect_call(calls[0].name, calls[0].args)
    else:
        expect_text("".join(c.text or "" for c in chunks), up)


# --- Google GenAI: count_tokens, embed_content, models ------------------------------------------
# Upstream kinds that serve embeddings behind these aliases (the mocks answer [i, len(text)]);
# the others must refuse with an error the SDK reads as a Gemini error.
EMBEDS = {"openai", "gemini"}


def count_tokens(up):
    r = gg.models.count_tokens(model=f"to-{up}", contents=PROMPT)
    assert r.total_tokens and r.total_tokens > 0, f"total_tokens was {r.total_tokens}"


def embed_one(up):
    try:
        r = gg.models.embed_content(model=f"to-{up}", contents="hello")
    except gerrors.APIError as e:
        assert up not in EMBEDS, f"{e.code} {e.status}: {e.message}"
        assert e.code >= 400 and e.status, f"not a Gemini error: {e.code} {e.status} {e.message}"
        return
    assert up in EMBEDS, "an upstream without embeddings answered"
    assert [list(e.values) for e in r.embeddings] == [[0.0, 5.0]], r.embeddings


def merges_strings(model):
    """google-genai 3.x takes a model named `*gemini*` for a multimodal embedding model and sends
    a list of strings as ONE content of several parts (one embedding); other models get one
    content per string."""
    try:
        from google.genai import _transformers as t
    except ImportError:
        return False
    f = getattr(t, "t_is_multimodal_embedding_model", None)
    return bool(f and f(model))


def embed_batch(up):
    model = f"to-{up}"
    try:
        r = gg.models.embed_content(model=model, contents=["ab", "abc", "abcd"])
    except gerrors.APIError as e:
        assert up not in EMBEDS, f"{e.code} {e.status}: {e.message}"
        assert e.code >= 400 and e.status, f"not a Gemini error: {e.code} {e.status} {e.message}"
        return
    assert up in EMBEDS, "an upstream without embeddings answered"
    got = [list(e.values) for e in r.embeddings]
    if merges_strings(model):
        # One content, its text parts joined by the gateway with newlines: 2+1+3+1+4 bytes.
        assert got == [[0.0, 11.0]], got
    else:
        assert got == [[0.0, 2.0], [1.0, 3.0], [2.0, 4.0]], got


def models_list(up):
    names = [m.name for m in gg.models.list()]
    assert f"models/to-{up}" in names, names


def models_get(up):
    m = gg.models.get(model=f"to-{up}")
    assert m.name == f"models/to-{up}", m.name


def openai_models(up):
    ids = [m.id for m in oa.models.list()]
    assert f"to-{up}" in ids, ids


INBOUND = [("openai-chat", chat), ("openai-responses", responses), ("anthropic", messages), ("gemini", gemini)]
EXTRAS = [("count_tokens", count_tokens), ("embed", embed_one), ("embed_batch", embed_batch),
          ("models.list", models_list), ("models.get", models_get), ("openai.models", openai_models)]


def cell(label, fn, *args):
    try:
        fn(*args)
        return (label, "PASS", "")
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        if os.environ.get("CONFORMANCE_TRACE"):
            traceback.print_exc()
        return (label, "FAIL", f"{type(e).__name__}: {e}".splitlines()[0][:160])


def main():
    rows = []
    for name, fn in INBOUND:
        for up in UPSTREAMS:
            cells = [cell(("stream" if stream else "json") + ("+tool" if tool else ""), fn, up, stream, tool)
                     for stream in (False, True) for tool in (False, True)]
            rows.append((name, up, cells))
    extras = [("google-genai+", up, [cell(label, fn, up) for label, fn in EXTRAS]) for up in UPSTREAMS]
    print("SDKs: " + ", ".join(f"{p} {v}" for p, v in SDK_VERSIONS.items()))
    for table in (rows, extras):
        labels = [c[0] for c in table[0][2]]
        print(f"{'inbound SDK':<18} {'upstream':<10} " + " ".join(f"{l:<14}" for l in labels))
        for name, up, cells in table:
            print(f"{name:<18} {up:<10} " + " ".join(f"{c[1]:<14}" for c in cells))
    failures = 0
    for name, up, cells in rows + extras:
        for label, status, detail in cells:
            if status == "FAIL":
                failures += 1
                print(f"FAIL {name} -> {up} [{label}]: {detail}")
    total = sum(len(c) for _, _, c in rows + extras)
    print(f"conformance: {total - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
