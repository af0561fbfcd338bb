"""Drive the official OpenAI and Anthropic Python SDKs' job APIs through the gateway: files,
batches, fine_tuning.jobs, videos and Anthropic messages.batches, as project A; then check
that project B's key sees none of A's objects (404 on every id, empty lists).

Run by tests/jobs.rs (which starts the Rust mock provider and the gateway) with GATEWAY_URL,
KEY_A and KEY_B in the environment. Prints one JSON object of what it saw; exits 1 on the
first failed check.
"""
import json
import os
import sys

import anthropic
import openai

URL = os.environ["GATEWAY_URL"]
A = openai.OpenAI(base_url=URL + "/v1", api_key=os.environ["KEY_A"])
B = openai.OpenAI(base_url=URL + "/v1", api_key=os.environ["KEY_B"])
AA = anthropic.Anthropic(base_url=URL, api_key=os.environ["KEY_A"])
AB = anthropic.Anthropic(base_url=URL, api_key=os.environ["KEY_B"])
seen = {}


def check(cond, what):
    if not cond:
        print(json.dumps(seen, default=str))
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def not_found(call, what):
    try:
        call()
    except (openai.NotFoundError, anthropic.NotFoundError):
        return
    check(False, f"{what}: expected 404")


# --- files and batches
lines = [
    {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "cheap", "messages": [{"role": "user", "content": f"hi {i}"}]}}
    for i in range(3)
]
data = "\n".join(json.dumps(l) for l in lines).encode()
f = A.files.create(file=("batch.jsonl", data), purpose="batch")
check(f.id.startswith("file-"), "file id")
check(A.files.retrieve(f.id).purpose == "batch", "retrieve")
check(f.id in [x.id for x in A.files.list()], "files.list has it")
b = A.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
check(b.status == "validating", "batch created")
statuses = [A.batches.retrieve(b.id).status for _ in range(3)]
check(statuses[-1] == "completed", f"batch finished: {statuses}")
done = A.batches.retrieve(b.id)
check(b.id in [x.id for x in A.batches.list()], "batches.list has it")
out = A.files.content(done.output_file_id).text
ids = [json.loads(l)["custom_id"] for l in out.splitlines()]
check(ids == ["req-0", "req-1", "req-2"], f"results keep the client's ids: {ids}")
seen["batch"] = {"id": b.id, "statuses": statuses, "usage": done.usage.model_dump() if done.usage else None}
b2 = A.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
check(A.batches.cancel(b2.id).status == "cancelling", "batch cancel")

# --- fine-tuning
ft_file = A.files.create(file=("train.jsonl", b'{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}\n'), purpose="fine-tune")
job = A.fine_tuning.jobs.create(training_file=ft_file.id, model="tunable")
check(job.model == "gpt-4o-mini-2024-07-18", f"fine-tune model rewritten: {job.model}")
for _ in range(2):
    job = A.fine_tuning.jobs.retrieve(job.id)
check(job.status == "succeeded" and job.trained_tokens == 5000, f"fine-tune finished: {job.status}")
check(job.id in [x.id for x in A.fine_tuning.jobs.list()], "fine_tuning.jobs.list has it")
events = list(A.fine_tuning.jobs.list_events(job.id))
check(len(events) == 1, "events")
ckpts = list(A.fine_tuning.jobs.checkpoints.list(job.id))
check(len(ckpts) == 1, "checkpoints")
check(A.files.content(job.result_files[0]).text == "a,b\n1", "a fine-tune result file is the owner's")
job2 = A.fine_tuning.jobs.create(training_file=ft_file.id, model="tunable")
check(A.fine_tuning.jobs.cancel(job2.id).status == "cancelled", "fine-tune cancel")
seen["fine_tune"] = job.id

# --- videos
v = A.videos.create(model="video", prompt="a cat on a skateboard", seconds="8")
check(v.status == "queued", "video created")
v = A.videos.retrieve(v.id)
check(v.status == "completed", "video done")
check(v.id in [x.id for x in A.videos.list()], "videos.list has it")
content = A.videos.download_content(v.id).read()
check(content == f"MP4:{v.id}".encode(), f"video content: {content[:20]!r}")
seen["video"] = v.id

# --- Anthropic message batches
mb = AA.messages.batches.create(requests=[
    {"custom_id": "m-1", "params": {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}},
    {"custom_id": "m-2", "params": {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "yo"}]}},
])
check(mb.processing_status == "in_progress", "message batch created")
mb = AA.messages.batches.retrieve(mb.id)
check(mb.processing_status == "ended", "message batch ended")
check(mb.results_url.startswith(URL + "/v1/messages/batches/"), f"results_url points at the gateway: {mb.results_url}")
results = [r.custom_id for r in AA.messages.batches.results(mb.id)]
check(results == ["m-1", "m-2"], f"message batch results: {results}")
check(len(list(AA.messages.batches.results(mb.id))) == 2, "results read twice")
check(mb.id in [x.id for x in AA.messages.batches.list()], "messages.batches.list has it")
mb2 = AA.messages.batches.create(requests=[{"custom_id": "c", "params": {"model": "claude", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}}])
check(AA.messages.batches.cancel(mb2.id).processing_status == "canceling", "message batch cancel")
seen["message_batch"] = mb.id

# --- project B sees none of it
not_found(lambda: B.files.retrieve(f.id), "B files.retrieve")
not_found(lambda: B.files.content(f.id), "B files.content")
not_found(lambda: B.files.delete(f.id), "B files.delete")
not_found(lambda: B.batches.retrieve(b.id), "B batches.retrieve")
not_found(lambda: B.batches.cancel(b.id), "B batches.cancel")
not_found(lambda: B.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"), "B batch on A's file")
not_found(lambda: B.fine_tuning.jobs.retrieve(job.id), "B fine_tuning.retrieve")
not_found(lambda: B.videos.retrieve(v.id), "B videos.retrieve")
not_found(lambda: B.videos.download_content(v.id), "B videos.content")
not_found(lambda: AB.messages.batches.retrieve(mb.id), "B messages.batches.retrieve")
not_found(lambda: list(AB.messages.batches.results(mb.id)), "B messages.batches.results")
check(list(B.files.list()) == [], "B files.list is empty")
check(list(B.batches.list()) == [], "B batches.list is empty")
check(list(B.fine_tuning.jobs.list()) == [], "B fine_tuning.list is empty")
check(list(B.videos.list()) == [], "B videos.list is empty")
check(list(AB.messages.batches.list()) == [], "B messages.batches.list is empty")

# --- deletes
check(A.videos.delete(v.id).deleted, "video delete")
check(A.files.delete(ft_file.id).deleted, "file delete")
not_found(lambda: A.files.retrieve(ft_file.id), "a deleted file")
AA.messages.batches.delete(mb2.id)
seen["ok"] = True
print(json.dumps(seen, default=str))
