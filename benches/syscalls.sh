#!/usr/bin/env bash
# Syscalls per proxied request: the release gateway on an `openai_compatible` mock upstream on
# loopback, `strace -f -c` attached to the gateway only, N requests from one keep-alive client
# connection, one after the other; prints the count of each syscall divided by N.
#
# Run: cargo build --release && benches/syscalls.sh [chat|stream|anthropic-stream] [N]
# (default: chat 2000; anthropic-stream: Anthropic Messages in, the OpenAI mock's stream out)
# Needs strace and python3 (the mock upstream and the client are the Python below, so their own
# syscalls are not counted). BIN=path/to/llm-gateway measures another build; TRACE=file writes
# the I/O syscalls of two requests, in order, instead of counting.
#
# The count includes what the gateway's background tasks did during the run (timers, the
# config-file watcher); IDLE=1 also counts an idle window as long as the run, for reference.
#
# COUNT=instructions runs the gateway under valgrind's callgrind instead and prints the
# instructions it executed per request in user space (collection on for the N requests only),
# with the functions that cost most: a count that other load on the machine does not change,
# where timing is noisy and hardware counters are absent (VMs). CALLGRIND_OUT=file keeps the
# profile for callgrind_annotate. NGINX=1 measures nginx as a plain reverse proxy instead (both
# modes), for comparison.
set -euo pipefail

scenario=${1:-chat}
n=${2:-2000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/release/llm-gateway}
[ -x "$bin" ] || { echo "no $bin: run cargo build --release first" >&2; exit 1; }
command -v strace >/dev/null || { echo "strace is not installed" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

cat >"$dir/helper.py" <<'PY'
"""mock upstream (`mock PORTFILE SCENARIO`) and client (`client PORT SCENARIO N`)."""
import hashlib, socket, sys, time

COMPLETION = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
              b'"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",'
              b'"content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}')

def sse():
    out = b""
    for w in ["The ", "quick ", "brown ", "fox ", "jumps."]:
        out += (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                b'"choices":[{"index":0,"delta":{"content":"' + w.encode() +
                b'"},"finish_reason":null}]}\n\n')
    out += (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
            b'"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}\n\ndata: [DONE]\n\n')
    return out

def read_request(conn, buf):
    """One request (header + Content-Length body) from buf+conn; returns the rest or None."""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        d = conn.recv(65536)
        if not d:
            return None
        rest += d
    return rest[length:]

def mock(portfile, scenario):
    streaming = scenario in ("stream", "anthropic-stream")
    body, ct = (sse(), b"text/event-stream") if streaming else (COMPLETION, b"application/json")
    resp = b"HTTP/1.1 200 OK\r\ncontent-type: " + ct + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    open(portfile, "w").write(str(ls.getsockname()[1]))
    import threading
    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            buf = read_request(conn, buf)
            if buf is None:
                return
            conn.sendall(resp)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()

def read_response(conn, buf):
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            raise SystemExit("gateway closed the connection")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise SystemExit("gateway answered " + head.decode(errors="replace") + rest[:300].decode(errors="replace"))
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(rest) < length:
            rest += conn.recv(65536)
        return rest[length:]
    # chunked
    while True:
        while b"\r\n" not in rest:
            rest += conn.recv(65536)
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            rest += conn.recv(65536)
        rest = rest[size + 2:]
        if size == 0:
            return rest

def client(port, scenario, n):
    if scenario == "anthropic-stream":
        # The Anthropic Messages API in, the OpenAI mock's stream out: translated both ways.
        body = (b'{"model":"fast","stream":true,"max_tokens":64,"messages":[{"role":"user",'
                b'"content":"Say something short."}],"temperature":0.2}')
        head = (b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: sk-syscalls\r\n"
                b"anthropic-version: 2023-06-01\r\n")
    else:
        stream = "true" if scenario == "stream" else "false"
        body = ('{"model":"fast","stream":%s,"messages":[{"role":"user","content":"Say something short."}],'
                '"temperature":0.2}' % stream).encode()
        head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer sk-syscalls\r\n"
    req = head + b"content-type: application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    t = time.time()
    for _ in range(n):
        conn.sendall(req)
        buf = read_response(conn, buf)
    conn.close()
    print("%.2f" % (time.time() - t))

if __name__ == "__main__":
    if sys.argv[1] == "mock":
        mock(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "client":
        client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "hash":
        print("sha256:" + hashlib.sha256(sys.argv[2].encode()).hexdigest())
PY

python3 "$dir/helper.py" mock "$dir/mock.port" "$scenario" &
pids+=($!)
for _ in $(seq 100); do [ -s "$dir/mock.port" ] && break; sleep 0.05; done
mock_port=$(cat "$dir/mock.port")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/gateway.yaml" <<EOF
listen: "127.0.0.1:$port"
state_dir: $dir/state
log: { requests: false }
providers:
  - { name: up, kind: openai_compatible, base_url: "http://127.0.0.1:$mock_port" }
models:
  - { alias: fast, targets: [ { provider: up, model: gpt-4o-mini } ] }
keys:
  - { id: syscalls, hash: "$(python3 "$dir/helper.py" hash sk-syscalls)" }
EOF
mode=${COUNT:-syscalls}
# NGINX=1: measure nginx as a plain reverse proxy on the same mock instead (one process, the
# overhead bench's settings), for the ratio the performance issue sets.
cmd=("$bin" run --threads 1 -c "$dir/gateway.yaml")
if [ "${NGINX:-0}" = 1 ]; then
  mkdir -p "$dir/nginx"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $dir/nginx/body; proxy_temp_path $dir/nginx/proxy; fastcgi_temp_path $dir/nginx/fcgi;
  uwsgi_temp_path $dir/nginx/uwsgi; scgi_temp_path $dir/nginx/scgi;
  upstream mock { server 127.0.0.1:$mock_port; keepalive 128; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$port;
    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
EOF
  cmd=("$(command -v nginx || echo /usr/sbin/nginx)" -c "$dir/nginx.conf")
fi
if [ "$mode" = instructions ]; then
  command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
    "${cmd[@]}" >"$dir/gateway.log" 2>&1 &
elif [ "${NGINX:-0}" = 1 ]; then
  "${cmd[@]}" >"$dir/gateway.log" 2>&1 &
else
  LLM_GATEWAY_LOG=warn "$bin" run --threads 1 -c "$dir/gateway.yaml" >"$dir/gateway.log" 2>&1 &
fi
gw=$!
pids+=($gw)
for _ in $(seq 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
# Warm up: the upstream connection is pooled, lazily built state is built.
python3 "$dir/helper.py" client "$port" "$scenario" 50 >/dev/null

count() { # $1 = output file; runs "$2..." while strace counts the gateway's syscalls
  local out=$1
  shift
  strace -f -c -o "$out" -p "$gw" 2>/dev/null &
  local st=$!
  sleep 0.5 # strace attaches to every thread
  "$@"
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
}
if [ -n "${TRACE:-}" ]; then
  # TRACE=file: the I/O syscalls of two requests, in order, with their first bytes.
  strace -f -e trace=sendto,recvfrom,writev,readv,read,write,getpeername -s 60 -o "$TRACE" -p "$gw" 2>/dev/null &
  st=$!
  sleep 0.5
  python3 "$dir/helper.py" client "$port" "$scenario" 2 >/dev/null
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
  echo "trace of 2 requests in $TRACE"
  exit 0
fi
if [ "$mode" = instructions ]; then
  callgrind_control -i on "$gw" >/dev/null
  python3 "$dir/helper.py" client "$port" "$scenario" "$n" >"$dir/elapsed"
  callgrind_control -i off "$gw" >/dev/null
  kill -TERM "$gw"
  wait "$gw" 2>/dev/null || true
  [ -n "${CALLGRIND_OUT:-}" ] && cp "$dir/callgrind.out" "$CALLGRIND_OUT"
  callgrind_annotate --inclusive=no "$dir/callgrind.out" 2>/dev/null | awk -v n="$n" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); printf "scenario '"$scenario"', %d requests: %.1fk instructions per request (user space)\n", n, $1 / n / 1e3 }
    /file:function/ { top = 1; next }
    top && NF >= 2 && shown < 25 { c = $1; gsub(",", "", c); if (c + 0 > 0) { f = $0; sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", f); sub(/^.*\]? */, "", f); printf "  %8.2fk  %s\n", c / n / 1e3, substr(f, 1, 150); shown++ } }'
  exit 0
fi
count "$dir/run.txt" python3 "$dir/helper.py" client "$port" "$scenario" "$n" >"$dir/elapsed"
elapsed=$(cat "$dir/elapsed")

table() { # strace -c summary -> calls (and failed calls, e.g. EAGAIN) per request
  awk -v n="$2" '
    $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
      errors = (NF == 6) ? $5 : 0
      printf "  %-16s %8d calls %7.2f per request (%.2f failed)\n", $NF, $4, $4 / n, errors / n
      total += $4
    }
    END { printf "  %-16s %8d calls %7.2f per request\n", "total", total, total / n }' "$1"
}
echo "scenario $scenario, $n requests on one keep-alive connection, ${elapsed}s under strace"
table "$dir/run.txt" "$n"
if [ "${IDLE:-0}" = 1 ]; then
  echo "idle window of ${elapsed}s (background tasks only), per the same $n:"
  count "$dir/idle.txt" sleep "$elapsed"
  table "$dir/idle.txt" "$n"
fi
