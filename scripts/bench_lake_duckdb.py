#!/usr/bin/env python3
"""The peer of `flywheel bench lake`: DuckDB running Flywheel's SQL on the same Parquet files.

Run by the bench as a subprocess in the same run (after Flywheel's queries, never at the same
time). Reads a JSON spec from the file named by --spec, or from stdin:

    {"lake": "/abs/path/to/lake", "tenant": "bench", "runs": 5,
     "views": [["outcomes_latest", "SELECT ..."], ["conversations", "SELECT ..."]],
     "queries": [{"name": "ai_usage", "sql": "SELECT ... $1 ... $2 ... $3",
                  "params": [{"timestamp_ms": 1735689600000}, {"text": "ai_concierge_response"}]}]}

and prints one JSON document on stdout (progress goes to stderr):

    {"peer": "duckdb", "version": "...", "threads": 2,
     "queries": [{"name": ..., "cold_ms": ..., "hot_ms": [...], "rows": ..., "columns": [...],
                  "result": [{...}, ...]} | {"name": ..., "error": "..."}]}

The tables are Flywheel's, as `views::definitions(Dialect::DuckDb)` defines them (the bench
passes that SQL in the spec): `interactions` is a view over read_parquet('<lake>/raw/**/*.parquet', hive_partitioning = true)
filtered to the tenant, and the derived tables are views with the DuckDB dialect's SQL. The
statements run exactly as given, with `$1`, `$2`, ... bound as parameters (timestamps as
TIMESTAMP WITH TIME ZONE in UTC). A statement DuckDB cannot run is reported with DuckDB's
message, never rewritten here.

Cold is the first run on a new connection (a fresh in-memory database, so DuckDB's Parquet
metadata and file caches are empty; the operating system's page cache is not dropped); hot are
the next `runs` runs on that connection. Times are measured here with perf_counter around
execute() and fetchall(), so the interpreter's start and the views' creation are not counted.
DuckDB uses its default number of threads (the machine's cores).

A missing duckdb package prints {"error": "..."} and exits 3. Install it with:

    pip install duckdb
"""

import argparse
import datetime
import decimal
import json
import os
import sys
import time

# Rows of each result printed for the bench to compare with Flywheel's.
MAX_RESULT_ROWS = 1000


def fail(message, code=3):
    print(json.dumps({"error": message}))
    sys.exit(code)


def sql_text(value):
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def connect(duckdb, spec):
    connection = duckdb.connect(":memory:")
    # Dates of TIMESTAMP WITH TIME ZONE values are UTC days, as in Flywheel.
    connection.execute("SET TimeZone = 'UTC'")
    files = os.path.join(spec["lake"], "raw", "**", "*.parquet")
    connection.execute(
        "CREATE VIEW interactions AS SELECT * FROM "
        f"read_parquet({sql_text(files)}, hive_partitioning = true) "
        f"WHERE tenant_id = {sql_text(spec['tenant'])}"
    )
    for name, select in spec["views"]:
        connection.execute(f"CREATE VIEW {name} AS {select}")
    return connection


def parameter(value):
    if "timestamp_ms" in value:
        return datetime.datetime.fromtimestamp(
            value["timestamp_ms"] / 1000, tz=datetime.timezone.utc
        )
    if "text" in value:
        return value["text"]
    raise ValueError(f"unknown parameter {value!r}")


def jsonable(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def timed(connection, sql, params):
    started = time.perf_counter()
    cursor = connection.execute(sql, params) if params else connection.execute(sql)
    rows = cursor.fetchall()
    elapsed_ms = (time.perf_counter() - started) * 1000
    columns = [column[0] for column in cursor.description]
    return elapsed_ms, columns, rows


def run_query(duckdb, spec, query):
    name = query["name"]
    try:
        params = [parameter(value) for value in query["params"]]
        connection = connect(duckdb, spec)
    except (duckdb.Error, ValueError) as err:
        return {"name": name, "error": f"setting up: {type(err).__name__}: {err}"}
    try:
        cold_ms, columns, rows = timed(connection, query["sql"], params)
        hot_ms = []
        for _ in range(spec["runs"]):
            elapsed_ms, _, _ = timed(connection, query["sql"], params)
            hot_ms.append(elapsed_ms)
    except duckdb.Error as err:
        return {"name": name, "error": f"{type(err).__name__}: {err}"}
    finally:
        connection.close()
    hot_sorted = sorted(hot_ms)
    print(
        f"duckdb {name}: cold {cold_ms:.0f} ms, hot median "
        f"{hot_sorted[len(hot_sorted) // 2] if hot_sorted else float('nan'):.0f} ms, "
        f"{len(rows)} rows",
        file=sys.stderr,
    )
    return {
        "name": name,
        "cold_ms": cold_ms,
        "hot_ms": hot_ms,
        "rows": len(rows),
        "columns": columns,
        "result": [
            {column: jsonable(value) for column, value in zip(columns, row)}
            for row in rows[:MAX_RESULT_ROWS]
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="the JSON spec (default: read it from stdin)")
    args = parser.parse_args()
    try:
        import duckdb
    except ImportError as err:
        fail(f"duckdb is not installed ({err}); pip install duckdb")
    if args.spec:
        with open(args.spec, encoding="utf-8") as spec_file:
            spec = json.load(spec_file)
    else:
        spec = json.load(sys.stdin)
    probe = duckdb.connect(":memory:")
    threads = probe.execute("SELECT current_setting('threads')").fetchone()[0]
    probe.close()
    results = [run_query(duckdb, spec, query) for query in spec["queries"]]
    print(
        json.dumps(
            {
                "peer": "duckdb",
                "version": duckdb.__version__,
                "threads": threads,
                "queries": results,
            }
        )
    )


if __name__ == "__main__":
    main()
