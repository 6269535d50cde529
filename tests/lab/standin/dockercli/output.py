"""How docker prints: tabwriter tables, --format (json, table, templates), go-units sizes and
durations, and compose's stderr lines (warnings, progress, events)."""

import datetime
import json
import sys
import time

from .templates import Headers, Template, go_json


def table(rows):
    """Columns as docker's tabwriter lays them out (min width 10, padding 3)."""
    widths = [max(10, max(len(row[i]) for row in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "\n".join("".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + row[-1] for row in rows)


def human_duration(seconds):
    """go-units HumanDuration, which docker's STATUS and CREATED columns use."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def human_size(size):
    """go-units HumanSizeWithPrecision(size, 3), as `docker cp` reports sizes."""
    units = ["B", "kB", "MB", "GB", "TB"]
    while size >= 1000 and len(units) > 1:
        size /= 1000
        units.pop(0)
    return f"{size:.3g}{units[0]}"


def go_time(epoch):
    """Go's time.String() in UTC, as in ps's CreatedAt."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def warn(message):
    """A compose warning, in logrus's format for a stderr that is not a terminal."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level=warning msg={json.dumps(message)}', file=sys.stderr)


def progress(kind, name, action):
    """A compose progress line (stderr), as ` Container netmon-db  Started`."""
    print(f" {kind} {name}  {action}", file=sys.stderr, flush=True)


def event(ident, text, status=""):
    """A compose event keyed by service, as its plain writer prints it (Go's Println): ` db Pulling `."""
    print(" " + " ".join((ident, text, status)), file=sys.stderr, flush=True)


def emit(rows, fmt, columns):
    """Print ROWS (dicts) as docker's formatter: "table" with COLUMNS ((title, key) pairs),
    "json" (one object per line), "table TEMPLATE" (header + tab-aligned), or a TEMPLATE."""
    if fmt == "json":
        for row in rows:
            print(go_json(row))
    elif fmt == "table":
        print(table([[title for title, _ in columns]] + [[row[key] for _, key in columns] for row in rows]))
    elif fmt.startswith("table "):
        template = Template(fmt[len("table "):].strip(), strict=True)
        titles = Headers({key: title for title, key in columns})
        lines = [template.render(titles)] + [template.render(row) for row in rows]
        cells = [line.split("\t") for line in lines]
        width = max(len(c) for c in cells)
        print(table([c + [""] * (width - len(c)) for c in cells]))
    else:
        template = Template(fmt, strict=True)
        for row in rows:
            print(template.render(row))
