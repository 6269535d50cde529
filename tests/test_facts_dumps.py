"""What a dump holds (fabfile/facts/dumps.py): TOC listings, the read-back, pg_restore's verdict."""

from fabfile.facts import dumps
from tests.fakes import recorded

TOC = """;
; Archive created at 2025-01-01 00:00:00 UTC
;     dbname: netmon
;     Format: CUSTOM
;
; Selected TOC Entries:
;
2; 3079 16385 EXTENSION - uuid-ossp
4025; 0 0 COMMENT - EXTENSION "uuid-ossp"
216; 1259 16396 TABLE public alerts netmon
230; 1259 16500 TABLE public flow_records netmon
231; 1259 16510 MATERIALIZED VIEW public flow_summary_5m netmon
3876; 0 16396 TABLE DATA public alerts netmon
3877; 0 16500 TABLE DATA public flow_records netmon
3880; 2606 16600 FK CONSTRAINT public interfaces interfaces_device_id_fkey netmon
"""


def test_toc_parse_and_clean_dump_has_no_problems():
    entries = dumps.parse_toc(TOC)
    kinds = {(e.kind, e.name) for e in entries}
    assert ("TABLE DATA", "flow_records") in kinds
    assert ("MATERIALIZED VIEW", "flow_summary_5m") in kinds
    assert ("FK CONSTRAINT", "interfaces") in kinds
    assert dumps.toc_problems(entries) == []


def test_toc_with_timescaledb_objects_is_refused():
    text = TOC + "5; 3079 17000 EXTENSION - timescaledb\n300; 1259 17100 TABLE _timescaledb_internal _hyper_1_1_chunk netmon\n"
    problems = dumps.toc_problems(dumps.parse_toc(text))
    assert problems and "TimescaleDB objects" in problems[0]


def test_recorded_toc_of_a_migrated_database():
    entries = dumps.parse_toc(recorded("toc_migrated_summary_cagg.txt"))
    assert any(e.kind == "EXTENSION" and e.name == "timescaledb" for e in entries)
    assert dumps.toc_problems(entries)[0].startswith("it holds TimescaleDB objects (")


def test_toc_without_flow_records_is_refused():
    text = "216; 1259 16396 TABLE public alerts netmon\n"
    assert dumps.toc_problems(dumps.parse_toc(text)) == ["it holds no flow_records table"]
    assert dumps.toc_problems([]) == ["it holds no objects"]


def test_readback_whole_vs_truncated():
    good = dumps.parse_readback("rows public.a 3\nrows public.flow_records 10\nend 0\n", "pg_restore_exit=0\n")
    assert good.ok and good.counts == {"public.a": 3, "public.flow_records": 10}
    cut = dumps.parse_readback("rows public.a 3\nend 1\n",
                               "pg_restore: error: could not read from input file: end of file\npg_restore_exit=1\n")
    assert not cut.ok and "end of file" in cut.errors[0]
    silent = dumps.parse_readback("end 0\n", "pg_restore_exit=1\n")
    assert not silent.ok


def test_restore_errors_reads_output_not_only_exit():
    out = ("pg_restore: error: could not execute query: ERROR:  relation exists\n"
           "pg_restore: warning: errors ignored on restore: 1\n")
    assert dumps.restore_errors(out, "", 0)[0] == "pg_restore: errors ignored on restore: 1"
    assert dumps.restore_errors("", "", 0) == []
    assert dumps.restore_errors("", "", 1) == ["pg_restore exited 1"]
