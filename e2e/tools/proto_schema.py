#!/usr/bin/env python3
"""Writes the stand-in's protobuf schema table from Kubernetes' generated.proto files.

The stand-in decodes kubectl's protobuf request bodies generically from this table: one line
per field, `<package>.<Message> <number> <name> <label> <type>`, where label is `opt`, `rep`
or `map:<key>:<value>` and type is a scalar (`string`, `int64`, ...) or a qualified message.
From the Go types beside each proto (types.go), `opt` gains `+inline` for embedded structs
(their fields sit in the parent's JSON) and `+omitzero` for non-pointer scalars that JSON
leaves out when zero (protobuf writes them always).

Usage: proto_schema.py OUT.txt DIR...   (DIRs are checkouts of kubernetes/api,
kubernetes/apimachinery, kubernetes/apiextensions-apiserver and kubernetes/kube-aggregator)
"""
import os
import re
import sys

SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float",
           "sint32", "sint64", "fixed32", "fixed64"}
FIELD = re.compile(r"^\s*(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)")
MAP = re.compile(r"^\s*map\s*<\s*([\w.]+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)")
MESSAGE = re.compile(r"^\s*message\s+(\w+)\s*\{")


def qualify(t, package):
    t = t.lstrip(".")
    if t in SCALARS or "." in t:
        return t
    return f"{package}.{t}"


def parse(path, out):
    package = None
    stack = []
    depth = 0
    for line in open(path, encoding="utf-8"):
        line = line.split("//", 1)[0]
        m = re.match(r"^\s*package\s+([\w.]+)\s*;", line)
        if m:
            package = m.group(1)
        m = MESSAGE.match(line)
        if m:
            stack.append((m.group(1), depth))
        if stack:
            name = ".".join([package] + [s[0] for s in stack])
            m = FIELD.match(line)
            if m:
                label = "rep" if m.group(1) == "repeated" else "opt"
                out.append(f"{name} {m.group(4)} {m.group(3)} {label} {qualify(m.group(2), package)}")
            m = MAP.match(line)
            if m:
                out.append(f"{name} {m.group(4)} {m.group(3)} map:{m.group(1)}:{qualify(m.group(2), package)} -")
        depth += line.count("{") - line.count("}")
        while stack and depth <= stack[-1][1]:
            stack.pop()


GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?([*\[\]\w.]+)\s+`([^`]*)`")
ZERO_OMITTED = {"bool", "string", "int32", "int64", "uint32", "uint64", "float64", "float32"}


def go_flags(directory, package, flags):
    """(message, field) -> flags, from the Go structs of one package directory."""
    for f in os.listdir(directory):
        if not (f.startswith("types") and f.endswith(".go")):
            continue
        struct = None
        for line in open(os.path.join(directory, f), encoding="utf-8"):
            m = re.match(r"^type\s+(\w+)\s+struct\s*\{", line)
            if m:
                struct = m.group(1)
                continue
            if line.startswith("}"):
                struct = None
                continue
            if not struct or 'protobuf:"' not in line:
                continue
            m = GO_FIELD.match(line)
            if not m:
                continue
            go_name, go_type, tag = m.groups()
            proto = re.search(r'protobuf:"[^"]*name=(\w+)', tag)
            js = re.search(r'json:"([^"]*)"', tag)
            if not proto:
                continue
            key = (f"{package}.{struct}", proto.group(1))
            json_name = js.group(1).split(",")[0] if js else ""
            # Go's JSON inlines an embedded struct unless its tag names it (`metadata`).
            if (go_name is None and not json_name) or (js and json_name == ""):
                flags[key] = "+inline"
            elif js and "omitempty" in js.group(1) and go_type in ZERO_OMITTED:
                flags[key] = "+omitzero"


def main():
    target, roots = sys.argv[1], sys.argv[2:]
    out = []
    flags = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            if "testapigroup" in dirpath or "v1beta" in dirpath or "v1alpha" in dirpath:
                continue
            for f in files:
                if f == "generated.proto":
                    path = os.path.join(dirpath, f)
                    parse(path, out)
                    package = re.search(r"^package\s+([\w.]+);", open(path).read(), re.M)
                    if package:
                        go_flags(dirpath, package.group(1), flags)
    lines = []
    for line in set(out):
        message, number, name, label, type_ = line.split(" ")
        if label == "opt":
            label += flags.get((message, name), "")
        lines.append(" ".join([message, number, name, label, type_]))
    with open(target, "w", encoding="utf-8") as fh:
        fh.write("\n".join(sorted(lines)) + "\n")


if __name__ == "__main__":
    main()
