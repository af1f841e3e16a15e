#!/usr/bin/env python3
"""Writes a copy of a template with other parameter defaults.

    with-defaults.py TEMPLATE OUT NAME=VALUE ...

Linters and `sam validate` check a template as its defaults make it;
scripts/sam-check.sh checks the Fargate watch tier this way. Only the
`Default:` line of each named parameter changes (the text stays as it is,
tags and comments included).
"""

import re
import sys


def main() -> int:
    src, out, *pairs = sys.argv[1:]
    text = open(src).read()
    for pair in pairs:
        name, value = pair.split("=", 1)
        block = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n)+)", text, re.M)
        if not block:
            sys.exit(f"with-defaults.py: no parameter {name} in {src}")
        body = block.group(1)
        line = f'    Default: "{value}"\n'
        if re.search(r"^    Default:.*\n", body, re.M):
            body = re.sub(r"^    Default:.*\n", line, body, count=1, flags=re.M)
        else:
            body += line
        text = text[: block.start(1)] + body + text[block.end(1):]
    open(out, "w").write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
