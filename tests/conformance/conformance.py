"""Drive the official OpenAI, Anthropic and Google GenAI Python SDKs through the gateway, for every
inbound API x upstream kind, stream and non-stream, text and tool call, and print a pass table.

Run by tests/conformance.rs (which starts the Rust mock upstreams and the gateway), with
GATEWAY_URL and GATEWAY_KEY in the environment. Exit status 1 if any cell fails.
"""
import json
import os
import sys
import traceback

import anthropic
import openai
from google import genai
from google.genai import types as gtypes

URL = os.environ["GATEWAY_URL"]
KEY = os.environ["GATEWAY_KEY"]
UPSTREAMS = ["openai", "anthropic", "gemini", "bedrock"]
TOOL_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PROMPT = "What is the weather in Paris?"

oa = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=20)
an = anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0, timeout=20)
gg = genai.Client(api_key=KEY, http_options=gtypes.HttpOptions(base_url=URL, timeout=20000))


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
        import httpx
        raw = httpx.post(f"{URL}/v1beta/models/to-{up}:streamGenerateContent?alt=sse", headers={"x-goog-api-key": KEY},
                         json={"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}, timeout=20)
        assert raw.headers["content-type"].startswith("text/event-stream"), raw.headers["content-type"]
        assert raw.text.startswith("data: "), raw.text[:80]
    assert any(c.usage_metadata and c.usage_metadata.prompt_token_count for c in chunks), "no usageMetadata"
    if tool:
        calls = [fc for c in chunks for fc in (c.function_calls or [])]
        assert calls, "no functionCall"
        expect_call(calls[0].name, calls[0].args)
    else:
        expect_text("".join(c.text or "" for c in chunks), up)


INBOUND = [("openai-chat", chat), ("openai-responses", responses), ("anthropic", messages), ("gemini", gemini)]


def main():
    failures = 0
    rows = []
    for name, fn in INBOUND:
        for up in UPSTREAMS:
            cells = []
            for stream in (False, True):
                for tool in (False, True):
                    label = ("stream" if stream else "json") + ("+tool" if tool else "")
                    try:
                        fn(up, stream, tool)
                        cells.append((label, "PASS", ""))
                    except Exception as e:  # noqa: BLE001 - report every failure, keep going
                        failures += 1
                        detail = f"{type(e).__name__}: {e}".splitlines()[0][:160]
                        cells.append((label, "FAIL", detail))
                        if os.environ.get("CONFORMANCE_TRACE"):
                            traceback.print_exc()
            rows.append((name, up, cells))
    labels = [c[0] for c in rows[0][2]]
    print(f"{'inbound SDK':<18} {'upstream':<10} " + " ".join(f"{l:<12}" for l in labels))
    for name, up, cells in rows:
        print(f"{name:<18} {up:<10} " + " ".join(f"{c[1]:<12}" for c in cells))
    for name, up, cells in rows:
        for label, status, detail in cells:
            if status == "FAIL":
                print(f"FAIL {name} -> {up} [{label}]: {detail}")
    total = sum(len(c) for _, _, c in rows)
    print(f"conformance: {total - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
