"""docker's flag parsing (spf13/pflag as the CLI uses it), for every subcommand."""

from .errors import DockerError, Unsupported


def parse(args, spec, what, interspersed=True):
    """Split ARGS into (options, operands) as docker's flag parsing does.

    SPEC maps flags ("-d", "--detach") to keys; a key ending in "=" takes a value, one ending
    in "*" collects values. Unknown flags are unsupported. Without INTERSPERSED the first
    operand ends the options (docker exec CONTAINER CMD -x)."""
    opts, operands, args = {}, [], list(args)
    while args:
        arg = args.pop(0)
        if arg == "--":
            operands += args
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            if not interspersed:
                operands += args
                break
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            items = [(name, value if eq else None)]
        else:  # a cluster of short flags: -it, -uroot, -n5
            items = []
            for i, char in enumerate(arg[1:], 2):
                if spec.get("-" + char, "")[-1:] in ("=", "*") and i < len(arg):
                    items.append(("-" + char, arg[i:]))
                    break
                items.append(("-" + char, None))
        for name, inline in items:
            key = spec.get(name)
            if key is None:
                raise Unsupported(f"{what} {name}")
            if key[-1] not in "=*":
                opts[key] = inline is None or inline.lower() in ("1", "true")
                continue
            if inline is None and not args:
                raise DockerError(f"flag needs an argument: {name}", code=125)
            value = args.pop(0) if inline is None else inline
            if key[-1] == "*":
                opts.setdefault(key[:-1], []).append(value)
            else:
                opts[key[:-1]] = value
    return opts, operands
