"""Convert mode: every hypertable and continuous aggregate becomes a plain table holding every row,
copied online through the hypertable while the TimescaleDB image runs (DESIGN.md §6).

The work is done by a small toolkit of functions installed in the schema ``netmon_rollback`` of
the app database (so each step is one short, readable call, and a rerun calls it again):

- ``track``: a plain copy table ``netmon_rollback.<name>`` (hypertable: LIKE the root, with its
  defaults, checks, identity, storage; aggregate: the application's own DDL for flow_summary_5m)
  and, on a hypertable, a row trigger logging each time slice a write touches (TimescaleDB clones
  row triggers onto every chunk);
- ``copy``: the bulk copy, one slice (the chunk interval) per transaction, read through the
  hypertable (compressed chunks are readable only that way), while the stack serves;
- ``catch_up``: the five-minute grains the log names re-copied idempotently (delete + insert in
  one transaction with the log entries they clear); an aggregate where its raw table was written;
- ``check``: per slice, row counts and an order-independent checksum of the rows, old against
  copy; a slice that differs is re-copied once, then the run stops if it still differs. Online it
  reads every slice; with the writers stopped only the ranges written since, because ``unproven``
  shows that nothing changed the rest without the change log seeing it (chunks dropped, a capture
  trigger missing or disabled, a TRUNCATE, a write to a copy that is not the toolkit's) — or, where
  it cannot, every slice again;
- ``switch``: foreign keys, grants and owner moved to the copy, owned sequences set aside, the
  capture trigger dropped; then the old table (or aggregate) is dropped, the copy moved into
  ``public``, and ``finish`` gives it the sequences.

Jobs are paused first (their ids kept in ``netmon_rollback.paused``); :func:`undo_commands` resumes
them and drops the toolkit if the run stops before the writers do. The switch runs in ONE
transaction with the writers stopped: last catch-up, counts and checksums of the ranges written
since the online check (so the downtime follows the writes, not the size of the data), the drops,
``DROP EXTENSION timescaledb`` without CASCADE (an error there means something is left, and nothing
was changed), the toolkit dropped.
"""

from __future__ import annotations

from . import commands as cmds
from . import dumps, stack
from .commands import Command, Expect, ident, literal
from .inventory import SiteSettings

SCHEMA = dumps.TOOLKIT_SCHEMA
# an aggregate the application has its own table for (flow_summary_5m) gets that table's DDL
_APP_DDL = " ".join(
    f"WHEN {literal(name)} THEN EXECUTE format('CREATE TABLE IF NOT EXISTS netmon_rollback.%I ({ddl})', nm);"
    for name, (ddl, _) in dumps.SUMMARY_DDL.items())

TOOLKIT_SQL = r"""
CREATE SCHEMA IF NOT EXISTS netmon_rollback;
CREATE TABLE IF NOT EXISTS netmon_rollback.sources (src name PRIMARY KEY, kind text NOT NULL, time_column name,
  width interval, raw name);
-- a write to a hypertable: the grain (five minutes of its time column) it touched
CREATE TABLE IF NOT EXISTS netmon_rollback.changes (id bigserial PRIMARY KEY, src name NOT NULL, grain timestamptz);
-- the ranges re-copied since the bulk copy: the last check takes their checksums again
CREATE TABLE IF NOT EXISTS netmon_rollback.touched (src name, lo timestamptz, hi timestamptz, PRIMARY KEY (src, lo, hi));
CREATE TABLE IF NOT EXISTS netmon_rollback.paused (job_id integer PRIMARY KEY);
CREATE TABLE IF NOT EXISTS netmon_rollback.owned (src name, seq regclass, col name, PRIMARY KEY (src, seq));
-- the chunks each hypertable had when the online check began: one gone means rows left unlogged
CREATE TABLE IF NOT EXISTS netmon_rollback.chunks (src name, chunk oid, PRIMARY KEY (src, chunk));

CREATE OR REPLACE FUNCTION netmon_rollback.grain() RETURNS interval LANGUAGE sql IMMUTABLE AS $f$
  SELECT interval '5 minutes' $f$;

CREATE OR REPLACE FUNCTION netmon_rollback.capture() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO netmon_rollback.changes (src, grain) VALUES (TG_ARGV[0],
      date_bin(netmon_rollback.grain(), (to_jsonb(OLD) ->> TG_ARGV[1])::timestamptz, TIMESTAMPTZ 'epoch'));
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO netmon_rollback.changes (src, grain) VALUES (TG_ARGV[0],
      date_bin(netmon_rollback.grain(), (to_jsonb(NEW) ->> TG_ARGV[1])::timestamptz, TIMESTAMPTZ 'epoch'));
  END IF;
  RETURN NULL;
END $f$;

-- A statement the change log cannot place: TRUNCATE of a hypertable, or a write to a copy that is
-- not the toolkit's own. Logged without a grain: the last check then takes every slice again.
CREATE OR REPLACE FUNCTION netmon_rollback.guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  IF current_setting('netmon_rollback.copying', true) IS DISTINCT FROM 'on' THEN
    INSERT INTO netmon_rollback.changes (src, grain) VALUES (TG_ARGV[0], NULL);
  END IF;
  RETURN NULL;
END $f$;

-- The copy's columns, cast to its types (an aggregate's sum() is numeric, the app's column bigint).
CREATE OR REPLACE FUNCTION netmon_rollback.cols(nm name, casts boolean, alias text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE AS $f$
  SELECT string_agg(CASE WHEN casts THEN format('%s%I::%s', alias || '.', a.attname, format_type(a.atttypid, a.atttypmod))
                         ELSE quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
  FROM pg_attribute a WHERE a.attrelid = format('netmon_rollback.%I', nm)::regclass
    AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
$f$;

-- The rows of [lo, hi) of the time column (every row when the source has none).
CREATE OR REPLACE FUNCTION netmon_rollback.cond(nm name, lo timestamptz, hi timestamptz) RETURNS text
LANGUAGE sql STABLE AS $f$
  SELECT CASE WHEN s.time_column IS NULL OR lo IS NULL THEN 'true'
              ELSE format('%I >= %L AND %I < %L', s.time_column, lo, s.time_column, hi) END
  FROM netmon_rollback.sources s WHERE s.src = nm
$f$;

CREATE OR REPLACE FUNCTION netmon_rollback.track(nm name, kind text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE col name; w interval; raw name;
BEGIN
  IF kind = 'hypertable' THEN
    SELECT d.column_name, d.time_interval INTO col, w FROM timescaledb_information.dimensions d
    WHERE d.hypertable_schema = 'public' AND d.hypertable_name = nm AND d.dimension_number = 1;
    IF col IS NULL OR w IS NULL THEN
      RAISE EXCEPTION 'public.% has no time dimension with an interval: convert handles time-partitioned hypertables only', nm;
    END IF;
    EXECUTE format('CREATE TABLE IF NOT EXISTS netmon_rollback.%I (LIKE public.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)', nm, nm);
  ELSE
    -- its buckets in slices of its raw hypertable's chunk interval, so a write to the raw table names them
    SELECT ca.hypertable_name, d.column_name, r.time_interval INTO raw, col, w
    FROM timescaledb_information.continuous_aggregates ca
    JOIN timescaledb_information.dimensions d ON d.hypertable_schema = ca.materialization_hypertable_schema
      AND d.hypertable_name = ca.materialization_hypertable_name AND d.dimension_number = 1
    JOIN timescaledb_information.dimensions r ON r.hypertable_schema = ca.hypertable_schema
      AND r.hypertable_name = ca.hypertable_name AND r.dimension_number = 1
    WHERE ca.view_schema = 'public' AND ca.view_name = nm;
    CASE nm @APP_DDL@
    ELSE EXECUTE format('CREATE TABLE IF NOT EXISTS netmon_rollback.%I AS SELECT * FROM public.%I WITH NO DATA', nm, nm);
    END CASE;
  END IF;
  INSERT INTO netmon_rollback.sources VALUES (nm, kind, col, w, raw) ON CONFLICT (src) DO NOTHING;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = 'netmon_rollback_guard'
                 AND t.tgrelid = format('netmon_rollback.%I', nm)::regclass) THEN
    EXECUTE format('CREATE TRIGGER netmon_rollback_guard AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
                   'ON netmon_rollback.%I FOR EACH STATEMENT EXECUTE FUNCTION netmon_rollback.guard(%L)', nm, nm);
  END IF;
  IF kind = 'hypertable' AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = 'netmon_rollback_capture'
                                         AND t.tgrelid = format('public.%I', nm)::regclass) THEN
    EXECUTE format('CREATE TRIGGER netmon_rollback_capture AFTER INSERT OR UPDATE OR DELETE ON public.%I '
                   'FOR EACH ROW EXECUTE FUNCTION netmon_rollback.capture(%L, %L)', nm, nm, col);
    EXECUTE format('CREATE TRIGGER netmon_rollback_guard AFTER TRUNCATE ON public.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION netmon_rollback.guard(%L)', nm, nm);
  END IF;
  RETURN format('%s: copy table netmon_rollback.%s, %s', nm, nm, CASE
    WHEN kind = 'hypertable' THEN format('copied per %s of %s, writes logged', w, col)
    WHEN col IS NOT NULL THEN format('copied per %s of %s, re-copied where %s is written', w, col, raw)
    ELSE 'copied whole' END);
END $f$;

CREATE OR REPLACE FUNCTION netmon_rollback.copy_range(nm name, lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE plpgsql SET jit = off AS $f$
DECLARE n bigint;
BEGIN
  PERFORM set_config('netmon_rollback.copying', 'on', true);
  EXECUTE format('DELETE FROM netmon_rollback.%I WHERE %s', nm, netmon_rollback.cond(nm, lo, hi));
  EXECUTE format('INSERT INTO netmon_rollback.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM public.%I WHERE %s', nm,
                 netmon_rollback.cols(nm, false), netmon_rollback.cols(nm, true), nm, netmon_rollback.cond(nm, lo, hi));
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('netmon_rollback.copying', 'off', true);
  RETURN n;
END $f$;

-- The bulk copy: one slice per transaction (a transaction over every chunk can run out of locks).
CREATE OR REPLACE PROCEDURE netmon_rollback.copy(nm name) LANGUAGE plpgsql AS $f$
DECLARE s record; lo timestamptz; hi timestamptz; sl timestamptz; n bigint := 0; k integer := 0;
BEGIN
  SELECT * INTO STRICT s FROM netmon_rollback.sources WHERE src = nm;
  IF s.time_column IS NULL THEN
    n := netmon_rollback.copy_range(nm, NULL, NULL);
    COMMIT;
    RAISE NOTICE '%: % rows copied', nm, n;
    RETURN;
  END IF;
  EXECUTE format('SELECT min(%I), max(%I) FROM public.%I', s.time_column, s.time_column, nm) INTO lo, hi;
  sl := date_bin(s.width, lo, TIMESTAMPTZ 'epoch');
  WHILE sl <= hi LOOP
    n := n + netmon_rollback.copy_range(nm, sl, sl + s.width);
    k := k + 1;
    COMMIT;
    sl := sl + s.width;
  END LOOP;
  RAISE NOTICE '%: % rows copied in % slices', nm, n, k;
END $f$;

CREATE OR REPLACE FUNCTION netmon_rollback.build_indexes(nm name) RETURNS integer LANGUAGE plpgsql AS $f$
DECLARE i record; k integer := 0;
BEGIN
  FOR i IN SELECT c.relname, pg_get_indexdef(x.indexrelid) AS def, con.conname, pg_get_constraintdef(con.oid) AS cdef
           FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
           LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
           WHERE x.indrelid = format('public.%I', nm)::regclass ORDER BY x.indexrelid LOOP
    CONTINUE WHEN to_regclass(format('netmon_rollback.%I', i.relname)) IS NOT NULL;
    IF i.conname IS NOT NULL THEN
      EXECUTE format('ALTER TABLE netmon_rollback.%I ADD CONSTRAINT %I %s', nm, i.conname, i.cdef);
    ELSE
      EXECUTE replace(i.def, format(' ON public.%I ', nm), format(' ON netmon_rollback.%I ', nm));
    END IF;
    k := k + 1;
  END LOOP;
  RETURN k;
END $f$;

-- Per slice: row counts and an order-independent checksum of the rows, of every row or (touched_only)
-- of the rows in the ranges copied again since the bulk copy, read by index on both sides;
-- the slices where the old table and the copy differ. With ``within``: the five-minute grains of
-- that range instead. One scan of each side.
CREATE OR REPLACE FUNCTION netmon_rollback.differing(nm name, touched_only boolean, within tstzrange DEFAULT NULL)
RETURNS TABLE (lo timestamptz, hi timestamptz, old_rows bigint, new_rows bigint) LANGUAGE plpgsql SET jit = off AS $f$
DECLARE s record; part text; mr tstzmultirange; rel text := '%s t'; w interval;
  sums text := format('coalesce(sum((''x'' || substr(md5(ROW(%s)::text), 1, 15))::bit(60)::bigint), 0)',
                      netmon_rollback.cols(nm, true, 't'));
BEGIN
  SELECT * INTO STRICT s FROM netmon_rollback.sources WHERE src = nm;
  IF s.time_column IS NULL THEN
    part := format('(SELECT TIMESTAMPTZ ''-infinity'' AS lo, TIMESTAMPTZ ''infinity'' AS hi, count(*) AS n, %s AS h '
                   'FROM %%s t)', sums);
  ELSE
    IF touched_only THEN
      SELECT coalesce(range_agg(tstzrange(r.lo, r.hi)), '{}') INTO mr FROM netmon_rollback.touched r WHERE r.src = nm;
    END IF;
    IF within IS NOT NULL THEN
      mr := coalesce(mr * tstzmultirange(within), tstzmultirange(within));
    END IF;
    IF mr IS NOT NULL THEN  -- bounds as constants: the planner reads them by index and skips other chunks
      SELECT '%s t WHERE ' || coalesce(string_agg(format('(t.%I >= %L AND t.%I < %L)', s.time_column, lower(x),
                                                         s.time_column, upper(x)), ' OR '), 'false')
      INTO rel FROM unnest(mr) x;
    END IF;
    w := CASE WHEN within IS NULL THEN s.width ELSE netmon_rollback.grain() END;
    part := format('(SELECT date_bin(%1$L, t.%2$I, TIMESTAMPTZ ''epoch'') AS lo, '
                   'date_bin(%1$L, t.%2$I, TIMESTAMPTZ ''epoch'') + %1$L::interval AS hi, count(*) AS n, '
                   '%3$s AS h FROM %4$s GROUP BY 1, 2)', w, s.time_column, sums, rel);
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT coalesce(a.lo, b.lo), coalesce(a.hi, b.hi), coalesce(a.n, 0), coalesce(b.n, 0) '
    'FROM %s a FULL JOIN %s b ON a.lo = b.lo AND a.hi = b.hi '
    'WHERE a.n IS DISTINCT FROM b.n OR a.h IS DISTINCT FROM b.h ORDER BY 1',
    format(part, format('public.%I', nm)), format(part, format('netmon_rollback.%I', nm)));
END $f$;

-- Why the writers-stopped check cannot limit itself to the ranges written since the online check:
-- NULL when every write since then is in the change log (no chunk gone, the capture trigger on the
-- hypertable and each of its chunks, the guards on it and its copy, no TRUNCATE or foreign write).
CREATE OR REPLACE FUNCTION netmon_rollback.unproven(nm name) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE s record; ht regclass; cp regclass := format('netmon_rollback.%I', nm)::regclass;
BEGIN
  SELECT * INTO STRICT s FROM netmon_rollback.sources WHERE src = nm;
  IF s.kind <> 'hypertable' THEN
    RETURN 'an aggregate has no change log';
  END IF;
  ht := format('public.%I', nm)::regclass;
  IF NOT EXISTS (SELECT 1 FROM netmon_rollback.chunks WHERE src = nm) THEN
    RETURN 'no online check on record';
  ELSIF EXISTS (SELECT 1 FROM netmon_rollback.changes WHERE src = nm AND grain IS NULL) THEN
    RETURN 'a TRUNCATE, or a write to the copy that was not the toolkit''s';
  ELSIF EXISTS (SELECT 1 FROM netmon_rollback.chunks k WHERE k.src = nm
                AND k.chunk NOT IN (SELECT c::oid FROM show_chunks(ht) c)) THEN
    RETURN 'a chunk was dropped since the online check';
  ELSIF EXISTS (SELECT 1 FROM (SELECT ht::oid AS rel UNION ALL SELECT c::oid FROM show_chunks(ht) c) r
                WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = r.rel
                                  AND t.tgname = 'netmon_rollback_capture' AND t.tgenabled IN ('O', 'A'))) THEN
    RETURN 'the capture trigger is missing or disabled on the hypertable or one of its chunks';
  ELSIF (SELECT count(*) FROM pg_trigger t WHERE t.tgname = 'netmon_rollback_guard' AND t.tgrelid IN (ht, cp)
         AND t.tgenabled IN ('O', 'A')) <> 2 THEN
    RETURN 'a guard trigger is missing or disabled';
  END IF;
  RETURN NULL;
END $f$;

-- Writes since the last catch-up copied again (the grains the log names, merged into ranges), in
-- one transaction with the log entries they clear. An aggregate: where its raw hypertable was
-- written, and its last hour (a refresh may still materialize writes made before the convert).
CREATE OR REPLACE FUNCTION netmon_rollback.catch_up(nm name) RETURNS integer LANGUAGE plpgsql AS $f$
DECLARE s record; ids bigint[]; mr tstzmultirange; r record; k integer := 0; newest timestamptz;
  g interval := netmon_rollback.grain();
BEGIN
  SELECT * INTO STRICT s FROM netmon_rollback.sources WHERE src = nm;
  IF s.kind = 'hypertable' THEN
    SELECT array_agg(id), range_agg(tstzrange(grain, grain + g)) INTO ids, mr FROM netmon_rollback.changes
    WHERE src = nm AND grain IS NOT NULL;
  ELSIF s.time_column IS NULL THEN
    PERFORM netmon_rollback.copy_range(nm, NULL, NULL);
    RETURN 1;
  ELSE
    EXECUTE format('SELECT max(%I) FROM public.%I', s.time_column, nm) INTO newest;
    SELECT range_agg(x) INTO mr FROM (
      SELECT tstzrange(t.lo, t.hi) AS x FROM netmon_rollback.touched t WHERE t.src = s.raw
      UNION ALL SELECT tstzrange(date_bin(g, newest, TIMESTAMPTZ 'epoch') - interval '55 minutes',
                                 date_bin(g, newest, TIMESTAMPTZ 'epoch') + g) WHERE newest IS NOT NULL) u;
  END IF;
  FOR r IN SELECT lower(x) AS lo, upper(x) AS hi FROM unnest(coalesce(mr, '{}'::tstzmultirange)) x LOOP
    PERFORM netmon_rollback.copy_range(nm, r.lo, r.hi);
    INSERT INTO netmon_rollback.touched VALUES (nm, r.lo, r.hi) ON CONFLICT DO NOTHING;
    k := k + 1;
  END LOOP;
  DELETE FROM netmon_rollback.changes WHERE id = ANY (ids);
  RETURN k;
END $f$;

-- The proof. Online (full_check): every slice, counts and checksums; in a slice that differs, each
-- five-minute grain that differs is re-copied (and marked touched), and may differ again only where
-- the change log holds writes made since (the last catch-up copies those grains again). Writers
-- stopped: counts and checksums of every range re-copied since the bulk copy, the rest proven
-- unchanged since the online check by unproven() — or, where it cannot be, every slice again. What
-- still differs stops the run, nothing switched.
CREATE OR REPLACE FUNCTION netmon_rollback.check(nm name, full_check boolean) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE s record; d record; g record; bad text; rows bigint; fixed integer := 0; ranges bigint; why text; whole boolean;
BEGIN
  SELECT * INTO STRICT s FROM netmon_rollback.sources WHERE src = nm;
  IF full_check AND s.kind = 'hypertable' THEN
    DELETE FROM netmon_rollback.changes WHERE src = nm AND grain IS NULL;  -- this check reads every slice
    DELETE FROM netmon_rollback.chunks WHERE src = nm;
    INSERT INTO netmon_rollback.chunks SELECT nm, c::oid FROM show_chunks(format('public.%I', nm)::regclass) c;
  END IF;
  why := CASE WHEN NOT full_check THEN netmon_rollback.unproven(nm) END;
  whole := full_check OR why IS NOT NULL;
  FOR d IN SELECT * FROM netmon_rollback.differing(nm, NOT whole) LOOP
    FOR g IN SELECT * FROM netmon_rollback.differing(nm, NOT whole, tstzrange(d.lo, d.hi)) LOOP
      PERFORM netmon_rollback.copy_range(nm, g.lo, g.hi);
      IF s.time_column IS NOT NULL THEN
        INSERT INTO netmon_rollback.touched VALUES (nm, g.lo, g.hi) ON CONFLICT DO NOTHING;
      END IF;
      fixed := fixed + 1;
    END LOOP;
  END LOOP;
  IF fixed > 0 THEN  -- read again what was re-copied
    FOR d IN SELECT * FROM netmon_rollback.differing(nm, NOT whole) LOOP
      FOR g IN SELECT * FROM netmon_rollback.differing(nm, NOT whole, tstzrange(d.lo, d.hi)) LOOP
        CONTINUE WHEN full_check AND (s.kind = 'cagg' OR EXISTS (SELECT 1 FROM netmon_rollback.changes c
                                                                WHERE c.src = nm AND c.grain >= g.lo AND c.grain < g.hi));
        bad := concat_ws('; ', bad, format('%s: %s rows in the old table, %s in the copy',
          CASE WHEN s.time_column IS NULL THEN 'all rows' ELSE format('[%s, %s)', g.lo, g.hi) END, g.old_rows, g.new_rows));
      END LOOP;
    END LOOP;
  END IF;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'convert check failed for %: % — nothing was switched, the old tables are intact', nm, bad;
  END IF;
  EXECUTE format('SELECT count(*) FROM netmon_rollback.%I', nm) INTO rows;
  SELECT count(*) INTO ranges FROM netmon_rollback.touched WHERE src = nm;
  RETURN format('%s: %s rows; %s', nm, rows, CASE
    WHEN full_check THEN 'counts and checksums of every slice equal to the old table'
    WHEN s.time_column IS NULL THEN 'count and checksum equal to the old table'
    WHEN why IS NOT NULL THEN format('counts and checksums of every slice equal to the old table (checked whole: %s)', why)
    ELSE format('counts and checksums of the %s range(s) written since the bulk copy equal to the old table, '
                'every other slice unchanged since the online check', ranges) END)
    || CASE WHEN fixed > 0 THEN format(' (%s re-copied)', fixed) ELSE '' END;
END $f$;

-- Before the old table is dropped (by a statement of its own, which TimescaleDB's hooks see).
CREATE OR REPLACE FUNCTION netmon_rollback.switch(nm name) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE s record; old regclass := format('public.%I', nm)::regclass; r record;
BEGIN
  SELECT * INTO STRICT s FROM netmon_rollback.sources WHERE src = nm;
  FOR r IN SELECT d.objid::regclass AS seq, a.attname FROM pg_depend d
           JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
           WHERE d.refobjid = old AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
             AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S' LOOP
    INSERT INTO netmon_rollback.owned VALUES (nm, r.seq, r.attname) ON CONFLICT DO NOTHING;
    EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', r.seq);  -- kept when the old table goes
  END LOOP;
  FOR r IN SELECT a.attname, pg_get_serial_sequence(format('public.%I', nm), a.attname) AS oldseq
           FROM pg_attribute a WHERE a.attrelid = old AND a.attidentity <> '' LOOP
    EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), (SELECT last_value FROM %s))',
                   format('netmon_rollback.%I', nm), r.attname, r.oldseq);
  END LOOP;
  FOR r IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = old AND contype = 'f' LOOP
    EXECUTE format('ALTER TABLE netmon_rollback.%I ADD CONSTRAINT %I %s', nm, r.conname, r.def);
  END LOOP;
  FOR r IN SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END AS who
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
           WHERE c.oid = old AND a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT %s ON netmon_rollback.%I TO %s', r.privilege_type, nm, r.who);
  END LOOP;
  EXECUTE format('ALTER TABLE netmon_rollback.%I OWNER TO %I', nm,
                 (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = old));
  EXECUTE format('DROP TRIGGER IF EXISTS netmon_rollback_guard ON netmon_rollback.%I', nm);
  IF s.kind = 'hypertable' THEN
    EXECUTE format('DROP TRIGGER netmon_rollback_capture ON public.%I', nm);
    EXECUTE format('DROP TRIGGER IF EXISTS netmon_rollback_guard ON public.%I', nm);
  END IF;
  RETURN format('%s: sequences, keys, grants and owner moved to the copy', nm);
END $f$;

-- After the copy moved into public: the sequences the old table owned belong to it.
CREATE OR REPLACE FUNCTION netmon_rollback.finish(nm name) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM netmon_rollback.owned WHERE src = nm LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNED BY public.%I.%I', r.seq, nm, r.col);
  END LOOP;
  RETURN format('%s: now a plain table', nm);
END $f$;
""".replace("@APP_DDL@", _APP_DDL)

PAUSE_SQL = ("INSERT INTO netmon_rollback.paused SELECT job_id FROM timescaledb_information.jobs "
             "WHERE scheduled AND job_id >= 1000 ON CONFLICT DO NOTHING; "
             "SELECT 'paused ' || count(*) || ' job(s)' FROM netmon_rollback.paused p, "
             "LATERAL alter_job(p.job_id, scheduled => false) a")
RESUME_SQL = ("SELECT 'resumed ' || count(*) || ' job(s)' FROM netmon_rollback.paused p, "
              "LATERAL alter_job(p.job_id, scheduled => true, if_exists => true) a")


def _toolkit_exists(site: SiteSettings) -> str:
    """Shell guard: run the rest only where an earlier step installed the toolkit."""
    probe = cmds.psql(site, "SELECT 1 FROM pg_namespace WHERE nspname = 'netmon_rollback'")
    return f"{probe} | grep -q 1"


def sources(hypertables: list[str], caggs: list[str]) -> list[tuple[str, str]]:
    """(name, kind) in the order they are converted: aggregates before the hypertables they read."""
    for name in (*hypertables, *caggs):
        ident(name)
    return [(n, "cagg") for n in sorted(caggs)] + [(n, "hypertable") for n in sorted(set(hypertables) - set(caggs))]


def prepare_commands(site: SiteSettings, srcs: list[tuple[str, str]]) -> list[Command]:
    track = [f"SELECT netmon_rollback.track({literal(n)}, {literal(k)})" for n, k in srcs]
    install = cmds.dexec(site, "psql", "-U", site.db_user, "-d", site.db_name, "-v", "ON_ERROR_STOP=1", "-X", "-q",
                         "-f", "-", stdin=True)
    return [
        Command(install, what="install the convert toolkit (schema netmon_rollback)",
                stdin="SET lock_timeout = '15s';\n" + TOOLKIT_SQL,
                stdin_note="the convert toolkit: schema netmon_rollback, functions track, copy, catch_up, check, switch "
                           "(fabfile/convert.py)"),
        Command(cmds.psql(site, PAUSE_SQL), what="pause TimescaleDB's jobs (their ids kept to resume them)"),
        Command(cmds.psql(site, "SET lock_timeout = '15s'", *track), what="copy tables and write capture triggers"),
    ]


def copy_commands(site: SiteSettings, srcs: list[tuple[str, str]]) -> list[Command]:
    out = []
    for name, _ in srcs:
        out.append(Command(cmds.psql(site, f"CALL netmon_rollback.copy({literal(name)})") + " 2>&1",
                           what=f"copy {name} through the hypertable, one slice per transaction", timeout=site.command_timeout))
        out.append(Command(cmds.psql(site, f"SELECT netmon_rollback.build_indexes({literal(name)})"),
                           what=f"build {name}'s indexes and keys on the copy", timeout=site.command_timeout))
    return out


def catch_up_sql(srcs: list[tuple[str, str]]) -> list[str]:
    """Hypertables first: an aggregate is copied again where its raw hypertable was written."""
    ordered = [n for n, k in srcs if k == "hypertable"] + [n for n, k in srcs if k == "cagg"]
    return [f"SELECT {literal(n)} || ': ' || netmon_rollback.catch_up({literal(n)}) || ' range(s) copied again'"
            for n in ordered]


def check_commands(site: SiteSettings, srcs: list[tuple[str, str]]) -> list[Command]:
    """Online: catch up, then the full check (counts and checksums of every slice)."""
    sql = [*catch_up_sql(srcs), *(f"SELECT netmon_rollback.check({literal(n)}, true)" for n, _ in srcs)]
    return [Command(cmds.psql(site, *sql), what="catch up and check every slice (counts, checksums)",
                    timeout=site.command_timeout)]


def _writes_locked(srcs: list[tuple[str, str]]) -> list[str]:
    """A writer still in a transaction commits before the last catch-up reads the log; none after."""
    return [f"LOCK TABLE ONLY public.{ident(n)} IN EXCLUSIVE MODE" for n, k in srcs if k == "hypertable"]


def switch_commands(site: SiteSettings, srcs: list[tuple[str, str]]) -> list[Command]:
    """The writers are stopped: the sessions they left ended, then one transaction from the last
    catch-up to DROP EXTENSION."""
    swap = []
    for name, kind in srcs:
        drop = "DROP MATERIALIZED VIEW" if kind == "cagg" else "DROP TABLE"
        swap += [f"SELECT netmon_rollback.switch({literal(name)})", f"{drop} public.{ident(name)}",
                 f"ALTER TABLE {SCHEMA}.{ident(name)} SET SCHEMA public", f"SELECT netmon_rollback.finish({literal(name)})"]
    stmts = [stack.end_sessions_sql(site), "BEGIN", "SET LOCAL lock_timeout = '15s'", *_writes_locked(srcs),
             *catch_up_sql(srcs), *(f"SELECT netmon_rollback.check({literal(n)}, false)" for n, _ in srcs), *swap,
             "DROP EXTENSION timescaledb", f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE", "COMMIT"]
    return [Command(cmds.psql(site, *stmts), what="last catch-up, check, switch, DROP EXTENSION (one transaction)",
                    timeout=site.command_timeout)]


def switch_done_probe(site: SiteSettings) -> Command:
    """Done when the app database has neither the extension nor the toolkit (the transaction committed)."""
    sql = ("SELECT count(*) FILTER (WHERE extname = 'timescaledb') || '|' || "
           "(SELECT count(*) FROM pg_namespace WHERE nspname = 'netmon_rollback') FROM pg_extension")
    return Command(cmds.psql(site, sql), what="has the switch committed", changes=False,
                   check=Expect("stdout", "0|0"), ok_codes=(0,))


def undo_commands(site: SiteSettings) -> list[Command]:
    """The run stopped before the writers did: jobs resumed, the toolkit and copies dropped —
    the site serves on TimescaleDB exactly as before."""
    script = (f"if {_toolkit_exists(site)}; then "
              f"{cmds.psql(site, RESUME_SQL, 'SET lock_timeout = ' + literal('15s'), f'DROP SCHEMA {SCHEMA} CASCADE')}; fi")
    return [Command(script, what="undo: resume TimescaleDB's jobs, drop the convert toolkit and its copies")]


# Clean mode keeps what the writers add after its safety dump: the capture trigger is there before
# the dump starts, the ranges it logged are copied into the toolkit's tables with the writers
# stopped (work that follows the writes, not the data), and after the site serves again the safety
# dump plus those ranges become one copy, *_at_stop.dump, that restores on plain PostgreSQL.

def keep_commands(site: SiteSettings, srcs: list[tuple[str, str]]) -> list[Command]:
    """The writers are stopped: every range written since the capture began, copied aside."""
    stmts = ["BEGIN", "SET LOCAL lock_timeout = '15s'", *_writes_locked(srcs), *catch_up_sql(srcs), "COMMIT"]
    return [Command(cmds.psql(site, *stmts), what="copy what was written since the safety dump into netmon_rollback",
                    timeout=site.command_timeout)]


# In the scratch database: the serial columns' sequences past every id the copy holds.
_SEQUENCES_PAST_ROWS = """DO $d$DECLARE r record; m bigint; BEGIN
  FOR r IN SELECT format('public.%I', c.relname) AS tbl, a.attname, pg_get_serial_sequence(format('public.%I', c.relname),
                      a.attname) AS seq
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped LOOP
    CONTINUE WHEN r.seq IS NULL;
    EXECUTE format('SELECT max(%I) FROM %s', r.attname, r.tbl) INTO m;
    IF m > coalesce(pg_sequence_last_value(r.seq::regclass), 0) THEN PERFORM setval(r.seq, m); END IF;
  END LOOP;
END $d$"""
_SEQUENCES_PAST_ROWS = " ".join(_SEQUENCES_PAST_ROWS.split())  # one line: a plan prints each command on one


def at_stop_commands(site: SiteSettings, srcs: list[tuple[str, str]], safety_dump: str, final_path: str) -> list[Command]:
    """The safety dump restored into a scratch database, each range written since replaced by the
    rows it held when the writers stopped (counted again), dumped and sealed as ``final_path``."""
    scratch, box = dumps.scratch_name(final_path), f"/tmp/{dumps.scratch_name(final_path)}.dump"  # noqa: S108
    out = dumps.drop_scratch_commands(site, [scratch], "drop what an earlier copy left")
    out += [
        Command(f"docker cp {cmds.q(safety_dump)} {cmds.q(site.db_container + ':' + box)}",
                what="copy the safety dump into the container"),
        Command(cmds.psql(site, f"CREATE DATABASE {ident(scratch)} OWNER {ident(site.db_user)} TEMPLATE template0",
                          db="postgres"), what=f"create scratch database {scratch} from template0"),
        Command(cmds.dexec(site, "pg_restore", "-U", site.db_user, "-d", scratch, "--exit-on-error", "--no-owner", box),
                what=f"restore the safety dump into {scratch}", timeout=site.command_timeout),
        Command(cmds.dexec(site, "rm", "-f", box), what="remove the safety dump's copy from the container"),
    ]
    for name, _ in srcs:
        table = f"public.{ident(name)}"
        ranges = (f"FROM {SCHEMA}.touched t JOIN {SCHEMA}.sources s ON s.src = t.src "  # noqa: S608
                  f"WHERE t.src = {literal(name)}")
        deletes = (f"SELECT format('DELETE FROM {table} WHERE %I >= %L AND %I < %L;', s.time_column, t.lo, "  # noqa: S608
                   f"s.time_column, t.hi) {ranges} AND s.time_column IS NOT NULL UNION ALL SELECT "
                   f"'DELETE FROM {table};' FROM {SCHEMA}.sources WHERE src = {literal(name)} AND time_column IS NULL")
        aside = f"(SELECT count(*) FROM {SCHEMA}.{ident(name)})"  # noqa: S608
        recount = (f"SELECT format('DO $c$BEGIN IF (SELECT count(*) FROM {table} WHERE %s) <> %s THEN RAISE EXCEPTION "  # noqa: S608
                   f"''{name}: the copy does not hold the %s rows of the ranges written since the safety dump''; "
                   f"END IF; END $c$;', coalesce(string_agg(format('(%I >= %L AND %I < %L)', s.time_column, t.lo, "
                   f"s.time_column, t.hi), ' OR '), (SELECT CASE WHEN time_column IS NULL THEN 'true' ELSE 'false' END "
                   f"FROM {SCHEMA}.sources WHERE src = {literal(name)})), {aside}, {aside}) {ranges}")
        out += [
            Command(dumps.pipe_into(site, site.db_name, deletes, scratch),
                    what=f"in {scratch}: remove {name}'s rows of the ranges written since the safety dump"),
            Command(dumps.copy_rows(site, site.db_name, scratch, table, f"SELECT * FROM {SCHEMA}.{ident(name)}"),  # noqa: S608
                    what=f"in {scratch}: {name}'s rows of those ranges as they were when the writers stopped",
                    timeout=site.command_timeout),
            Command(dumps.pipe_into(site, site.db_name, recount, scratch),
                    what=f"in {scratch}: count {name}'s rows of those ranges again"),
        ]
    out.append(Command(cmds.psql(site, _SEQUENCES_PAST_ROWS, db=scratch),
                       what=f"in {scratch}: sequences past every id the copy holds"))
    out += dumps.make_dump_commands(site, final_path, db=scratch, what="copy at the writers' stop")
    out += dumps.drop_scratch_commands(site, [scratch], "drop the scratch database of the copy")
    return out


def drop_toolkit_commands(site: SiteSettings) -> list[Command]:
    return [Command(cmds.psql(site, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
                    what="drop the capture's tables (schema netmon_rollback)")]
