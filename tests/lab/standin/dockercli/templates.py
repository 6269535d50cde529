"""The part of Go's text/template that docker's --format needs, printing values as Go does."""

import json
import re

from .errors import DockerError, Unsupported


class _Missing:
    """A field the data lacks: prints as Go's <no value>, is false in {{if}}."""

    def __bool__(self):
        return False


MISSING = _Missing()


class Headers(dict):
    """The data a "table ..." template's header line is rendered from: each field's title
    (the table's own titles, else docker's habit of upper-casing the field name)."""

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return {"CreatedAt": "CREATED AT", "LocalVolumes": "LOCAL VOLUMES"}.get(key, key.upper())


def go_str(value):
    """A value as Go's template printer shows it."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def go_json(value):
    """json.Marshal's output: compact, with <, > and & escaped."""
    text = json.dumps(None if value is MISSING else value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Template:
    """The part of Go's text/template docker's --format needs here: {{.A.B}}, {{json .X}},
    {{if .X}}...{{else}}...{{end}} and literal text. Anything else is unsupported.

    STRICT is for a fixed set of fields (ps rows): an unknown one is an error, as in docker."""

    FIELD = r"\.(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?"

    def __init__(self, text, strict=False):
        self.strict = strict
        self.nodes = self._parse(text.replace("\\t", "\t").replace("\\n", "\n"))

    def _parse(self, text):
        root = []
        branches, ifs = [root], []  # where nodes go now; the open {{if}}s
        pos = 0
        for match in re.finditer(r"\{\{(.*?)\}\}", text, re.S):
            if match.start() > pos:
                branches[-1].append(text[pos:match.start()])
            pos = match.end()
            action = match.group(1).strip()
            value = re.fullmatch(rf"(json\s+)?({self.FIELD})", action)
            condition = re.fullmatch(rf"if\s+({self.FIELD})", action)
            if value:
                branches[-1].append(("value", value.group(2), bool(value.group(1))))
            elif condition:
                node = ("if", condition.group(1), [], [])
                branches[-1].append(node)
                branches.append(node[2])
                ifs.append(node)
            elif action == "else" and ifs:
                branches[-1] = ifs[-1][3]
            elif action == "end" and ifs:
                branches.pop()
                ifs.pop()
            else:
                raise Unsupported(f"--format {match.group(0)}")
        if ifs:
            raise DockerError("template parsing error: template: :1: unexpected EOF")
        branches[-1].append(text[pos:])
        return root

    def render(self, data):
        return "".join(self._render(self.nodes, data))

    def _render(self, nodes, data):
        for node in nodes:
            if isinstance(node, str):
                yield node
            elif node[0] == "value":
                value = self._lookup(data, node[1])
                yield go_json(value) if node[2] else go_str(value)
            else:
                yield from self._render(node[2] if self._lookup(data, node[1]) else node[3], data)

    def _lookup(self, data, path):
        for key in filter(None, path.split(".")):
            if isinstance(data, dict) and key in data:
                data = data[key]
            elif self.strict:
                raise DockerError(f'template: :1: executing "" at <{path}>: can\'t evaluate field {key}')
            else:
                return MISSING
        return data
