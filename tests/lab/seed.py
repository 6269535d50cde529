"""Data for NetMon's non-flow tables, made from the schema the backend created.

Reading the columns from the database (not a second copy of the schema) keeps one source of
truth: the install's app/main.py, whose migrations the backend stand-in runs. Rows reference
their parents through the foreign keys the schema declares, so tables are filled parents first.
"""

from __future__ import annotations

COLUMNS_SQL = """
SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES', c.column_default IS NOT NULL,
       coalesce(c.character_maximum_length, 0), coalesce(fk.ref_table, ''), coalesce(fk.ref_column, '')
FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
LEFT JOIN (
  SELECT kcu.table_name, kcu.column_name, ccu.table_name AS ref_table, ccu.column_name AS ref_column
  FROM information_schema.table_constraints tc
  JOIN information_schema.key_column_usage kcu
    ON kcu.constraint_schema = tc.constraint_schema AND kcu.constraint_name = tc.constraint_name
  JOIN information_schema.constraint_column_usage ccu
    ON ccu.constraint_schema = tc.constraint_schema AND ccu.constraint_name = tc.constraint_name
  WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'
) fk ON fk.table_name = c.table_name AND fk.column_name = c.column_name
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
ORDER BY c.table_name, c.ordinal_position
"""
SKIP = {"users", "flow_records", "flow_summary_5m", "schema_migrations"}  # the backend and build.py fill these
ROWS = {"interface_metrics": 4000, "device_metric_history": 2000, "interfaces": 400, "mac_addresses": 600}
DEFAULT_ROWS = 60
# Time-series columns filled even though they have a default (now()), so their rows span days, as a
# site's history does (and a hypertable made of them has several chunks).
SPREAD = {("interface_metrics", "timestamp"), ("device_metric_history", "timestamp")}


def value(table: str, col: str, dtype: str, maxlen: int) -> str | None:
    """A SQL expression in `g` (the row number) for a column of this type, or None to leave it out."""
    text = f"'{col}-' || g"
    exprs = {
        "integer": "g", "bigint": "g", "smallint": "(g % 30000)::smallint",
        "numeric": "(g * 1.5)", "double precision": "(g * 1.5)", "real": "(g * 1.5)",
        "boolean": "(g % 2 = 0)",
        "text": text, "character varying": f"left({text}, {maxlen})" if maxlen else text,
        "character": f"left({text}, {maxlen or 1})",
        "inet": "('10.' || (g / 62500) % 250 || '.' || (g / 250) % 250 || '.' || (1 + g % 250))::inet",
        "cidr": "('10.' || (g / 250) % 250 || '.' || g % 250 || '.0/24')::cidr",
        "macaddr": "('02:00:00:' || lpad(to_hex((g >> 16) % 256), 2, '0') || ':' || lpad(to_hex((g >> 8) % 256), 2, '0')"
                   " || ':' || lpad(to_hex(g % 256), 2, '0'))::macaddr",
        "timestamp with time zone": "now() - g * interval '1 minute'",
        "timestamp without time zone": "localtimestamp - g * interval '1 minute'",
        "date": "current_date - g % 365",
        "jsonb": "'{}'::jsonb", "json": "'{}'::json",
        "uuid": "gen_random_uuid()", "bytea": "'\\x00'::bytea",
        "interval": "interval '5 minutes'",
    }
    return exprs.get(dtype)


def seed_sql(rows: list[list[str]]) -> str:
    """INSERT ... SELECT FROM generate_series statements for each table, parents first."""
    tables: dict[str, list[tuple]] = {}
    for table, col, dtype, nullable, has_default, maxlen, ref_table, ref_col in rows:
        tables.setdefault(table, []).append((col, dtype, nullable == "t", has_default == "t", int(maxlen),
                                             ref_table, ref_col))
    order: list[str] = []

    def visit(t: str, path: tuple = ()) -> None:
        if t in order or t in path or t not in tables:
            return
        for _, _, _, _, _, ref, _ in tables[t]:
            if ref and ref != t:
                visit(ref, (*path, t))
        order.append(t)

    for t in sorted(tables):
        visit(t)
    statements = []
    for t in order:
        if t in SKIP:
            continue
        cols, exprs = [], []
        for col, dtype, nullable, has_default, maxlen, ref, ref_col in tables[t]:
            if ref and ref != t:
                expr = (f"(SELECT {ref_col} FROM {ref} ORDER BY {ref_col} "
                        f"OFFSET g % greatest((SELECT count(*) FROM {ref}), 1) LIMIT 1)")
            elif (has_default and (t, col) not in SPREAD) or (ref == t and nullable):
                continue
            else:
                expr = value(t, col, dtype, maxlen)
                if expr is None:
                    if nullable:
                        continue
                    raise ValueError(f"seed: no value for {t}.{col} of type {dtype}")
            cols.append(f'"{col}"')
            exprs.append(expr)
        n = ROWS.get(t, DEFAULT_ROWS)
        if cols:
            statements.append(f"INSERT INTO {t} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
                              f"FROM generate_series(1, {n}) AS g;")
        else:
            statements.append(f"INSERT INTO {t} SELECT FROM generate_series(1, {n});")
    return "\n".join(statements) + "\n"
