"""Real Jinja (python3-jinja2) rendering chat templates as Hugging Face's transformers does, for
btx's Jinja tests: an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loop
controls, transformers' tojson, raise_exception and strftime_now.

    python3 jinja_render.py REQUEST.json
    REQUEST: [{"template": "...", "context": {...}}, ...]
Prints JSON: [{"text": "..."} or {"error": "..."} per template].
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        requests = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    out = []
    for r in requests:
        try:
            out.append({"text": env.from_string(r["template"]).render(**r["context"])})
        except Exception as e:  # noqa: BLE001 -- the test compares that both refuse
            out.append({"error": f"{type(e).__name__}: {e}"})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
