from pathlib import Path

import pytest
import yaml

from fabfile import files
from fabfile.errors import PreflightError
from fabfile.facts.compose import compose_db_service
from fabfile.inventory import SiteSettings
from fabfile.site_state import SiteState

COMPOSE_INLINE = """services:
  db:
    image: timescale/timescaledb:latest-pg16
    container_name: netmon-db
    command: postgres -c shared_preload_libraries=timescaledb
    volumes:
      - postgres_data:/var/lib/postgresql/data
  backend:
    image: netmon-backend
    command: uvicorn app.main:app
volumes:
  postgres_data:
"""
COMPOSE_BLOCK = """services:
  db:
    image: "timescale/timescaledb:2.17.2-pg16"
    command:
      - postgres
      - -c
      - shared_preload_libraries=timescaledb
    environment:
      POSTGRES_DB: netmon
  redis:
    image: redis:7-alpine
"""


def test_revert_compose_inline_command():
    out = files.revert_compose(COMPOSE_INLINE)
    db = compose_db_service(out)
    assert db["image"] == "postgres:16-alpine" and "command" not in db
    data = yaml.safe_load(out)
    assert data["services"]["backend"]["command"] == "uvicorn app.main:app"  # other services untouched
    assert data["services"]["db"]["volumes"] == ["postgres_data:/var/lib/postgresql/data"]


def test_revert_compose_block_command():
    out = files.revert_compose(COMPOSE_BLOCK)
    data = yaml.safe_load(out)
    assert data["services"]["db"] == {"image": "postgres:16-alpine", "environment": {"POSTGRES_DB": "netmon"}}
    assert data["services"]["redis"]["image"] == "redis:7-alpine"


def test_fallback_compose_starts_plain_without_preload():
    data = yaml.safe_load(files.compose_without_preload(COMPOSE_INLINE))
    assert data["services"]["db"]["image"] == "postgres:16-alpine"
    assert data["services"]["db"]["command"] == ["postgres", "-c", "shared_preload_libraries="]


SHARED = """# NetMon stack (edited by hand: keep these notes)
services:
  db:   # the database
    image: timescale/timescaledb:latest-pg16
    command: postgres -c shared_preload_libraries=timescaledb
    environment: {POSTGRES_DB: netmon}
  tsdb-tools:
    image: timescale/timescaledb:latest-pg16
    command: postgres -c shared_preload_libraries=timescaledb
  backend:
    image: "netmon-backend:1.4"   # pinned
    depends_on:
      db:
        condition: service_healthy
    ports: ['8000:8000']

volumes:
  postgres_data:
"""


def test_only_the_db_service_changes_when_another_shares_its_lines():
    """tsdb-tools has the db's exact image and command lines: they stay; so does every comment,
    quote and blank line."""
    assert files.revert_compose(SHARED) == SHARED.replace(
        "  db:   # the database\n    image: timescale/timescaledb:latest-pg16\n"
        "    command: postgres -c shared_preload_libraries=timescaledb\n",
        "  db:   # the database\n    image: postgres:16-alpine\n")


def test_fallback_command_goes_to_the_db_service_not_to_a_depends_on_key_named_db():
    out = files.compose_without_preload(SHARED)
    assert out == SHARED.replace(
        "  db:   # the database\n    image: timescale/timescaledb:latest-pg16\n"
        "    command: postgres -c shared_preload_libraries=timescaledb\n",
        "  db:   # the database\n    image: postgres:16-alpine\n"
        '    command: ["postgres", "-c", "shared_preload_libraries="]\n')
    assert yaml.safe_load(out)["services"]["backend"]["depends_on"] == {"db": {"condition": "service_healthy"}}


def test_lab_compose_file_round_trips_byte_for_byte_outside_the_db_service():
    text = (Path(__file__).parent / "lab/standin/app/post/docker-compose.yml").read_text()
    out = files.revert_compose(text)
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=False) if a != b]
    assert changed[0] == ("    image: timescale/timescaledb:latest-pg16", "    image: postgres:16-alpine")
    assert out == text.replace("    image: timescale/timescaledb:latest-pg16\n", "    image: postgres:16-alpine\n") \
        .replace("    command: postgres -c shared_preload_libraries=timescaledb\n", "")


def test_a_compose_file_that_is_not_yaml_is_refused_not_rewritten():
    with pytest.raises(PreflightError, match="not valid YAML"):
        files.revert_compose("services:\n  db:\n    image: [unclosed\n")


def test_revert_init_sql_drops_whole_statements():
    text = ("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\nCREATE EXTENSION IF NOT EXISTS timescaledb;\n"
            "CREATE EXTENSION IF NOT EXISTS \"pg_stat_statements\";\n-- TimescaleDB hypertables\n"
            "SELECT create_hypertable('flow_records', 'timestamp',\n  chunk_time_interval => INTERVAL '1 day');\n"
            "ALTER TABLE flow_records SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');\n"
            "SELECT add_compression_policy('flow_records', INTERVAL '7 days');\n"
            "SELECT 'NetMon DB initialized' AS status;\n")
    assert files.revert_init_sql(text) == ("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\n"
                                           "CREATE EXTENSION IF NOT EXISTS \"pg_stat_statements\";\n"
                                           "SELECT 'NetMon DB initialized' AS status;\n")


def test_revert_init_sql_drops_a_do_block_with_its_comments():
    text = ("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\n\n-- TimescaleDB: flow_records as a hypertable.\n"
            "-- the backend converts it otherwise.\nDO $$\nBEGIN\n  IF true THEN\n"
            "    PERFORM create_hypertable('flow_records', 'timestamp');\n  END IF;\nEND $$;\n\n"
            "DO $body$ BEGIN PERFORM 1; END $body$;\nSELECT 'NetMon DB initialized' AS status;\n")
    assert files.revert_init_sql(text) == ("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\n\n\n"
                                           "DO $body$ BEGIN PERFORM 1; END $body$;\n"
                                           "SELECT 'NetMon DB initialized' AS status;\n")


def test_revert_requirements():
    text = "fastapi==0.110.0\nasyncpg==0.29.0\npsycopg2-binary==2.9.9\n"
    assert files.revert_requirements(text) == "fastapi==0.110.0\nasyncpg==0.29.0\n"


def test_manual_revert_writes_on_stdin_and_names_files_for_a_person():
    state = SiteState(files=["docker-compose.yml", "backend/requirements.txt"], mentions=["backend/app/main.py"],
                      file_texts={"docker-compose.yml": COMPOSE_INLINE, "backend/requirements.txt": "asyncpg==0.29.0\n"})
    commands, person = files.manual_revert(SiteSettings(), state)
    assert [c.what for c in commands] == ["rewrite docker-compose.yml (manual revert)"]
    assert "postgres:16-alpine" in commands[0].stdin and "postgres:16-alpine" not in commands[0].cmd
    assert person == ["backend/app/main.py"]
