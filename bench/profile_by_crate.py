#!/usr/bin/env python3
"""Instructions per page by crate, from the callgrind dumps of `bench --settings`.

    bench/profile_by_crate.py --pages 1000 [--spans 4.1] [--top 3] \\
        A/logs/*.callgrind.*.1 [--minus B/logs/*.callgrind.*.1]

Self cost per function, summed over the dumps (both processes of a setting)
and divided by the pages, by crate: the one its demangled path starts with,
drop glue (`core::ptr::drop_in_place<T>`) for T's, C code by its library.
With --minus, A − B per crate (and per span). Read here, not through
callgrind_annotate: 3.19's adds a call's inclusive cost to its caller's self
cost when the call began before `callgrind_control -z` (`calls=0`).
"""
import argparse, collections, re


def crate(obj, file, fn):
    if ".so" in obj:
        lib = obj.rsplit("/", 1)[-1].split(".so")[0]
        if lib == "libc" and re.search(r"malloc|free|realloc|calloc|tcache|arena|unlink|consolid", fn):
            return "libc: malloc, free"
        return "libc: memcpy, memset, …" if lib == "libc" and re.match(r"_*(mem|str)", fn) else lib
    if "sqlite3" in file:
        return "SQLite (C, libsqlite3-sys)"
    drop = re.match(r"core::ptr::drop_in_place<(.*)>$", fn)
    path = re.search(r"([A-Za-z_]\w*)::", drop[1] if drop else fn)
    if not path:
        return "(no symbol)" if fn.startswith("0x") else "(C, other)"
    if path[1] in ("core", "alloc", "std"):
        return "core::fmt" if re.search(r"\b(core|alloc)::fmt::", fn) else "std, core, alloc"
    return path[1]


def self_costs(dumps):
    """(crate, function) -> self instructions, over all the dumps."""
    costs = collections.Counter()
    for dump in dumps:
        names, now, after_call = {}, {"ob": "", "fl": "", "fn": ""}, False
        for line in open(dump):
            key, eq, rest = line.rstrip("\n").partition("=")
            kind = {"fi": "fl", "fe": "fl"}.get(key[-2:], key[-2:])
            if eq and key in ("ob", "fl", "fi", "fe", "fn", "cob", "cfi", "cfl", "cfn"):
                m = re.match(r"\((\d+)\)(?: (.*))?$", rest)
                name = names.setdefault((kind, m[1]), m[2]) if m else rest
                if key in now:
                    now[key] = name
            elif eq and key == "calls":
                after_call = True  # the next cost line is the call's inclusive cost
            elif line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if not after_call and len(fields) > 1:
                    costs[(crate(now["ob"], now["fl"], now["fn"]), now["fn"])] += int(fields[1])
                after_call = False
    return costs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pages", type=float, required=True)
    p.add_argument("--spans", type=float, help="spans per page: adds a per-span column")
    p.add_argument("--top", type=int, default=0, help="functions listed under each crate")
    p.add_argument("--other", type=float, default=300, help="crates under this are summed")
    p.add_argument("dumps", nargs="+")
    p.add_argument("--minus", nargs="+", default=[])
    a = p.parse_args()
    fa, fb = self_costs(a.dumps), self_costs(a.minus)
    ca, cb = collections.Counter(), collections.Counter()
    for c, f in ((ca, fa), (cb, fb)):
        for (k, _), n in f.items():
            c[k] += n / a.pages
    head = ["crate", "A", "B", "A − B"] + (["per span"] if a.spans else [])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    rows = sorted(ca.keys() | cb.keys(), key=lambda k: -abs(ca[k] - cb[k]))
    small = [k for k in rows if abs(ca[k] - cb[k]) < a.other]
    for label, keys in [(k, [k]) for k in rows if k not in small] + [("others", small), ("total", rows)]:
        x, y = sum(ca[k] for k in keys), sum(cb[k] for k in keys)
        cells = [label, f"{x:,.0f}", f"{y:,.0f}", f"{x - y:,.0f}"]
        print("| " + " | ".join(cells + ([f"{(x - y) / a.spans:,.0f}"] if a.spans else [])) + " |")
        if label not in ("others", "total"):
            fns = {fn: (fa[(c, fn)] - fb[(c, fn)]) / a.pages for c, fn in fa.keys() | fb.keys() if c == label}
            for fn, d in sorted(fns.items(), key=lambda kv: -abs(kv[1]))[: a.top]:
                print(f"| &nbsp; `{fn[:90]}` | | | {d:,.0f} |")


if __name__ == "__main__":
    main()
