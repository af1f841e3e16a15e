#!/usr/bin/env python3
"""Fails on any dependency cycle CloudFormation would refuse.

    cfn-cycles.py TEMPLATE [--mode "NAME=K=V;K=V" ...] [--modes FILE] [--nested LOGICAL=PATH]

For each mode (a set of parameter values): a template with the SAM transform
is expanded by the SAM translator (what CloudFormation runs before anything
else), its conditions are resolved with the mode's parameters, resources
whose condition is false are dropped, `Fn::If` picks its branch, and the
edges CloudFormation orders resources by (Ref, Fn::GetAtt, Fn::Sub and
DependsOn) are collected. A cycle prints one line naming it, and the exit
status is 1. A nested stack (`--nested EtcdCluster=deploy/etcd/template.yaml`)
is checked too, with the parameters its parent passes in that mode.

Linters disagree on cycles across versions (cfn-lint 1.51 reports one that
1.58 misses), so this check is the project's own.
"""

import argparse
import copy
import logging
import os
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The translator needs a Region; its metrics are of no use here.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
logging.getLogger("samtranslator").setLevel(logging.ERROR)

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "css",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/css/1",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}

NO_VALUE = object()


class Unresolved(Exception):
    pass


class NoPolicies:
    """The translator asks IAM for managed policy ARNs only for names."""

    def load(self):
        return {}


def expand(template):
    """The SAM translator's output, with local code paths as `sam package`
    would upload them (the translator only takes S3 locations)."""
    if "Transform" not in template:
        return template
    t = copy.deepcopy(template)
    for res in t.get("Resources", {}).values():
        props = res.setdefault("Properties", {})
        kind = res.get("Type")
        if kind == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://bucket/code.zip"
        if kind == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            props["Location"] = "https://s3.amazonaws.com/bucket/nested.yaml"
        if kind == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            props["ContentUri"] = "s3://bucket/layer.zip"
    return transform(t, {}, NoPolicies())


def parameters(template, given):
    values = dict(PSEUDO)
    for name, p in template.get("Parameters", {}).items():
        if name in given:
            values[name] = given[name]
        elif "Default" in p:
            values[name] = p["Default"]
        else:
            values[name] = Unresolved
    for name, v in values.items():
        kind = template.get("Parameters", {}).get(name, {}).get("Type", "")
        if isinstance(v, str) and ("List" in kind):
            values[name] = [x for x in v.split(",")] if v else []
    return values


def evaluate(node, params, conditions):
    """Value of a condition expression."""
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Fn::Equals":
            a, b = (scalar(x, params, conditions) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not evaluate(arg[0], params, conditions)
        if fn == "Fn::And":
            return all(evaluate(x, params, conditions) for x in arg)
        if fn == "Fn::Or":
            return any(evaluate(x, params, conditions) for x in arg)
        if fn == "Condition":
            return conditions(arg)
    raise Unresolved(f"condition {node!r}")


def scalar(node, params, conditions):
    if isinstance(node, (str, int, float, bool)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref" and arg in params:
            v = params[arg]
            if v is Unresolved:
                raise Unresolved(f"parameter {arg} has no value in this mode")
            return ",".join(v) if isinstance(v, list) else v
        if fn == "Fn::Join":
            sep, items = arg
            parts = []
            for x in items:
                v = scalar(x, params, conditions)
                parts.extend(v if isinstance(v, list) else [v])
            return sep.join(str(p) for p in parts)
        if fn == "Fn::Select":
            i, items = arg
            items = scalar(items, params, conditions) if not isinstance(items, list) else items
            if isinstance(items, str):
                items = items.split(",")
            return scalar(items[int(scalar(i, params, conditions))], params, conditions)
        if fn == "Fn::If":
            return scalar(arg[1] if conditions(arg[0]) else arg[2], params, conditions)
        if fn == "Condition":
            return conditions(arg)
    raise Unresolved(f"value {node!r}")


def resolve_ifs(node, conditions):
    """The template as CloudFormation sees it in this mode: each Fn::If
    replaced by its branch, AWS::NoValue removed."""
    if isinstance(node, dict):
        if len(node) == 1 and "Fn::If" in node:
            name, yes, no = node["Fn::If"]
            return resolve_ifs(yes if conditions(name) else no, conditions)
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        out = {}
        for k, v in node.items():
            v = resolve_ifs(v, conditions)
            if v is not NO_VALUE:
                out[k] = v
        return out
    if isinstance(node, list):
        return [v for v in (resolve_ifs(x, conditions) for x in node) if v is not NO_VALUE]
    return node


SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(node, found, local=()):
    """Every logical name `node` refers to: Ref, Fn::GetAtt, Fn::Sub."""
    if isinstance(node, dict):
        for fn, arg in node.items():
            if fn == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif fn == "Fn::GetAtt":
                name = arg[0] if isinstance(arg, list) else str(arg).split(".")[0]
                found.add(name)
            elif fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for var in SUB_VAR.findall(text):
                    head = var.split(".")[0]
                    if head not in names and head not in local:
                        found.add(head)
                references(names, found, local)
            else:
                references(arg, found, local)
    elif isinstance(node, list):
        for x in node:
            references(x, found, local)


def check(template, given, label):
    """Answers (cycles, resolved template) of one template in one mode."""
    params = parameters(template, given)
    raw = template.get("Conditions", {})
    cache = {}

    def conditions(name):
        if name not in cache:
            if name not in raw:
                raise Unresolved(f"no condition {name}")
            cache[name] = evaluate(raw[name], params, conditions)
        return cache[name]

    resources = {}
    for name, res in template.get("Resources", {}).items():
        if "Condition" in res and not conditions(res["Condition"]):
            continue
        resources[name] = resolve_ifs(res, conditions)

    edges = {}
    for name, res in resources.items():
        found = set()
        references(res.get("Properties", {}), found)
        for key in ("Metadata", "CreationPolicy", "UpdatePolicy"):
            references(res.get(key, {}), found)
        deps = res.get("DependsOn", [])
        found.update([deps] if isinstance(deps, str) else deps)
        edges[name] = sorted(d for d in found if d in resources)

    cycles = []
    state = {}
    path = []

    def visit(n):
        state[n] = "open"
        path.append(n)
        for d in edges[n]:
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d)
        path.pop()
        state[n] = "done"

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return [f"{label}: dependency cycle {' -> '.join(c)}" for c in cycles], resources, params, conditions


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("template")
    ap.add_argument("--mode", action="append", default=[],
                    help="NAME=K=V;K=V: parameter values of one mode")
    ap.add_argument("--modes", help="a file of modes, one 'NAME=K=V;K=V' a line (# comments)")
    ap.add_argument("--nested", action="append", default=[],
                    help="LOGICAL=PATH: a nested stack's template, checked with what the parent passes")
    args = ap.parse_args()

    modes = []
    lines = list(args.mode)
    if args.modes:
        with open(args.modes) as f:
            lines += [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    for m in lines or ["default="]:
        name, _, rest = m.partition("=")
        given = {}
        for pair in filter(None, rest.split(";")):
            k, _, v = pair.partition("=")
            given[k] = v
        modes.append((name, given))
    nested = dict(n.split("=", 1) for n in args.nested)

    with open(args.template) as f:
        source = yaml_parse(f.read())
    problems = []
    checked = 0
    for name, given in modes:
        try:
            expanded = expand(source)
            found, resources, params, conditions = check(expanded, given, f"{args.template} [{name}]")
        except Unresolved as e:
            problems.append(f"{args.template} [{name}]: cannot resolve {e}")
            continue
        except Exception as e:  # the translator's own refusals
            problems.append(f"{args.template} [{name}]: the SAM translator refused it: {e}")
            continue
        checked += 1
        problems.extend(found)
        for logical, path in nested.items():
            if logical not in resources:
                continue
            passed = {}
            for k, v in resources[logical].get("Properties", {}).get("Parameters", {}).items():
                try:
                    passed[k] = str(scalar(v, params, conditions))
                except Unresolved:
                    # A value known only at deploy time (another resource's
                    # output): the child sees some value, never "".
                    passed[k] = "<deploy-time>"
            with open(path) as f:
                child = yaml_parse(f.read())
            try:
                found, _, _, _ = check(expand(child), passed, f"{path} [{name}]")
            except Unresolved as e:
                problems.append(f"{path} [{name}]: cannot resolve {e}")
                continue
            checked += 1
            problems.extend(found)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"no dependency cycle in {checked} expanded templates ({', '.join(n for n, _ in modes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
