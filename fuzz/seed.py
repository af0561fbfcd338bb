#!/usr/bin/env python3
"""Fill fuzz/corpus/<target>/ with seed inputs: the golden files under tests/golden/ (every
file that is in a target's format, input or translated output), plus a few hand-written
Bedrock bodies and event-stream frames (Bedrock has no golden files). Idempotent; run from
anywhere: python3 fuzz/seed.py"""

import json
import pathlib
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CORPUS = ROOT / "fuzz" / "corpus"
FORMATS = ["openai_chat", "openai_responses", "anthropic", "gemini"]


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def in_format(kind, fmt):
    """Golden files of `kind` that are in format `fmt`: inputs in <kind>/<fmt>/<case>.<ext>,
    and outputs <kind>/*/<case>.<fmt>.<ext> translated into it."""
    for f in sorted((GOLDEN / kind).glob("*/*")):
        parts = f.name.split(".")
        if len(parts) == 2 and f.parent.name == fmt:
            yield f
        elif len(parts) == 3 and parts[1] == fmt and parts[2] in ("json", "sse"):
            yield f


def frame(headers, payload):
    """One AWS event-stream frame with string headers."""
    h = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        h += bytes([len(n)]) + n + bytes([7]) + struct.pack(">H", len(v)) + v
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + h + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(ty, value):
    hs = [(":event-type", ty), (":content-type", "application/json"), (":message-type", "event")]
    return frame(hs, json.dumps(value).encode())


def exception(ty, message):
    hs = [(":exception-type", ty), (":content-type", "application/json"), (":message-type", "exception")]
    return frame(hs, json.dumps({"message": message}).encode())


def bedrock_streams():
    text = [
        event("messageStart", {"role": "assistant", "p": "abcd"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello "}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "world"}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": {"inputTokens": 12, "outputTokens": 3, "cacheReadInputTokens": 4}}),
    ]
    tool = [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "get_weather"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 40, "outputTokens": 9}}),
    ]
    failed = text[:2] + [exception("throttlingException", "Too many requests")]
    proto = text[:1] + [frame([(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")], b"")]
    return {"text": b"".join(text), "tool": b"".join(tool), "exception": b"".join(failed), "error": b"".join(proto)}


BEDROCK_RESPONSES = {
    "text": {"output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}}, "stopReason": "end_turn",
             "usage": {"inputTokens": 10, "outputTokens": 2, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 1}},
    "tool": {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "s"}}},
        {"reasoningContent": {"redactedContent": "b64"}},
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": [1, {"b": None}]}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 1, "outputTokens": 1}},
}

EMBEDDINGS = {
    "openai_req": {"model": "e", "input": ["a", "bb"], "dimensions": 256, "encoding_format": "base64", "user": "u"},
    "openai_req_str": {"model": "e", "input": "hello"},
    "gemini_resp": {"embeddings": [{"values": [1, 2.5]}, {"values": [-3.0, 0]}], "usageMetadata": {"promptTokenCount": 4}},
    "titan_resp": {"embedding": [0.1, 0.2], "inputTextTokenCount": 3},
    "cohere_resp": {"embeddings": {"float": [[0.1], [0.2]]}, "id": "x", "texts": ["a", "b"]},
    "cohere_resp_plain": {"embeddings": [[0.1], [0.2]]},
}


def main():
    for fmt in FORMATS:
        for f in in_format("requests", fmt):
            put(f"request_{fmt}", f.parent.name + "-" + f.name, f.read_bytes())
            if fmt == "openai_chat":
                put("passthrough", f.parent.name + "-" + f.name, f.read_bytes())
        for f in in_format("responses", fmt):
            put(f"response_{fmt}", f.parent.name + "-" + f.name, f.read_bytes())
        for f in in_format("streams", fmt):
            put(f"stream_{fmt}", f.parent.name + "-" + f.name, f.read_bytes())
            if fmt == "openai_chat":
                put("stream_usage", f.parent.name + "-" + f.name, f.read_bytes())
    # Same-format request bodies of the other formats are JSON objects too.
    for fmt in FORMATS[1:]:
        for f in in_format("requests", fmt):
            put("passthrough", f.parent.name + "-" + f.name, f.read_bytes())
    for name, v in BEDROCK_RESPONSES.items():
        put("response_bedrock", name + ".json", json.dumps(v))
    for name, b in bedrock_streams().items():
        put("stream_bedrock", name + ".bin", b)
        put("eventstream", name + ".bin", b)
    for name, v in EMBEDDINGS.items():
        put("embeddings", name + ".json", json.dumps(v))
    # Error answers: the first byte picks the status (an index in STATUSES of fuzz/src/lib.rs),
    # the rest is the body.
    statuses = [200, 400, 401, 402, 403, 404, 408, 413, 422, 424, 429, 500, 502, 503, 504, 529]
    for f in sorted((GOLDEN / "errors").glob("*/*.json")):
        if len(f.name.split(".")) != 2:
            continue
        case = json.loads(f.read_text())
        body = case["body"] if isinstance(case["body"], str) else json.dumps(case["body"])
        put("upstream_error", f.parent.name + "-" + f.name, bytes([statuses.index(case["status"])]) + body.encode())
    for name, body in [
        ("bedrock_throttle", {"__type": "com.amazon.coral.availability#ThrottlingException", "message": "slow"}),
        ("ok_chat", {"id": "c", "choices": [{"index": 0, "message": {"content": "hi"}}]}),
        ("error_200", {"error": {"message": "x", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}),
    ]:
        put("upstream_error", name + ".json", bytes([0]) + json.dumps(body).encode())
    # Transcription uploads (boundary XyZ): one model part, two, odd spellings, LF-only heads.
    model = b'Content-Disposition: form-data; name="model"'
    file_ = b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav'
    def form(parts, nl=b"\r\n"):
        out = b""
        for head, value in parts:
            out += b"--XyZ" + nl + head + nl + nl + value + nl
        return out + b"--XyZ--" + nl
    put("multipart", "one_model", form([(model, b"whisper-1"), (file_, b"RIFF....")]))
    put("multipart", "two_models", form([(model, b"stt"), (file_, b"RIFF"), (model, b"dear")]))
    put("multipart", "spellings", form([(b"content-disposition: form-data; name=model", b"a"),
                                        (b"Content-Disposition: form-data; name*=utf-8''model", b"b")]))
    put("multipart", "lf_only", form([(model, b"stt"), (file_, b"ab--XyZ")], nl=b"\n"))
    put("multipart", "epilogue", form([(model, b"stt")]) + form([(model, b"dear")]))
    # scan_differential: JSON documents of every shape a fast path reads (request and answer
    # bodies, and each `data:` line of the golden OpenAI streams).
    for kind in ("requests", "responses"):
        for f in sorted((GOLDEN / kind).glob("*/*.json")):
            put("scan_differential", kind + "-" + f.parent.name + "-" + f.name, f.read_bytes())
    for f in in_format("streams", "openai_chat"):
        for i, line in enumerate(f.read_text().splitlines()):
            if line.startswith("data: {"):
                put("scan_differential", f"{f.parent.name}-{f.name}-{i}", line[6:])
    for t in sorted(CORPUS.iterdir()):
        print(f"{t.name}: {len(list(t.iterdir()))} seeds")


if __name__ == "__main__":
    main()
