#!/usr/bin/env python3
"""Where resident memory is, by kind of mapping, in two /proc/<pid>/smaps snapshots.

Usage: benches/support/smaps_diff.py BEFORE.smaps AFTER.smaps

Written by `cargo bench --bench memory -- --smaps DIR`. Kinds: the binary's own file,
other files, [heap] (glibc's main arena), [stack], anonymous mappings that look like thread
stacks (a guard page right below them), other anonymous mappings by size class (mimalloc's
arenas and segments are large anonymous mappings). KiB per kind: Rss and Anonymous.
"""
import collections
import sys


def parse(path):
    maps = []
    cur = None
    for line in open(path):
        first = line.split()[0]
        if "-" in first and not first.endswith(":"):
            lo, hi = (int(x, 16) for x in first.split("-"))
            parts = line.split(None, 5)
            name = parts[5].strip() if len(parts) > 5 else ""
            cur = {"lo": lo, "hi": hi, "perms": parts[1], "name": name, "Rss": 0, "Anonymous": 0}
            maps.append(cur)
        elif cur is not None and line.split(":")[0] in ("Rss", "Anonymous"):
            cur[line.split(":")[0]] = int(line.split()[1])
    return maps


def kinds(maps):
    out = collections.defaultdict(lambda: [0, 0, 0])
    guards = {m["hi"] for m in maps if m["perms"].startswith("---p")}
    exe = next((m["name"] for m in maps if m["name"].startswith("/") and "x" in m["perms"]), "")
    for m in maps:
        size = m["hi"] - m["lo"]
        if m["name"] == exe:
            k = "binary"
        elif m["name"].startswith("/"):
            k = "other files"
        elif m["name"]:
            k = m["name"]
        elif m["perms"].startswith("---p"):
            k = "anon, no access (reserved)"
        elif m["lo"] in guards and size <= 16 << 20:
            k = "thread stacks (%d KiB)" % (size >> 10)
        elif size >= 64 << 20:
            k = "anon >= 64 MiB"
        elif size >= 1 << 20:
            k = "anon 1-64 MiB"
        else:
            k = "anon < 1 MiB"
        o = out[k]
        o[0] += m["Rss"]
        o[1] += m["Anonymous"]
        o[2] += 1
    return out


def main():
    a, b = (kinds(parse(p)) for p in sys.argv[1:3])
    print("%-34s %10s %10s %10s %10s %8s" % ("kind", "rss before", "rss after", "anon bef", "anon aft", "maps"))
    tot = [0, 0, 0, 0]
    for k in sorted(set(a) | set(b), key=lambda k: -(b[k][0] - a[k][0])):
        print("%-34s %10d %10d %10d %10d %4d/%-4d" % (k, a[k][0], b[k][0], a[k][1], b[k][1], a[k][2], b[k][2]))
        tot = [tot[0] + a[k][0], tot[1] + b[k][0], tot[2] + a[k][1], tot[3] + b[k][1]]
    print("%-34s %10d %10d %10d %10d" % ("total", *tot))


if __name__ == "__main__":
    main()
