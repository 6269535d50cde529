"""Flow rollups: five-minute summaries of flow_records, kept in flow_summary_5m."""

from datetime import UTC, datetime, timedelta

import asyncpg

# TimescaleDB time_bucket() buckets. Recomputes whole buckets, so rerunning is harmless.
ROLLUP_SQL = """
INSERT INTO flow_summary_5m (bucket, device_id, src_ip, dst_ip, protocol, bytes, packets, flow_count)
SELECT time_bucket('5 minutes', "timestamp") AS bucket,
       device_id, src_ip, dst_ip, protocol, sum(bytes)::bigint, sum(packets)::bigint, count(*)
FROM flow_records
WHERE "timestamp" >= time_bucket('5 minutes', $1::timestamptz)
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (bucket, device_id, src_ip, dst_ip, protocol) DO UPDATE
  SET bytes = EXCLUDED.bytes, packets = EXCLUDED.packets, flow_count = EXCLUDED.flow_count
"""


async def rollup_flows(pool: asyncpg.Pool, since: datetime | None = None) -> int:
    """Summarise the flows since `since` (default: the last two buckets); returns rows written."""
    since = since or datetime.now(UTC) - timedelta(minutes=5)
    status = await pool.execute(ROLLUP_SQL, since)
    return int(status.split()[-1])


async def backfill_summaries(pool: asyncpg.Pool, hours: int = 24) -> int:
    """Rebuild the summaries of the last `hours` hours, e.g. after downtime."""
    return await rollup_flows(pool, datetime.now(UTC) - timedelta(hours=hours))
