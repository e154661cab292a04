"""Ember's Flight SQL endpoint seen by a client nobody here wrote: the ADBC Flight SQL driver
(PyPI adbc-driver-flightsql) with pyarrow and pandas.

Usage: flight_sql_adbc.py URI USER PASSWORD TOKEN DAY
Prints one JSON object with what the driver saw; the Rust test compares it with the job's output.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager

uri, user, password, token, day = sys.argv[1:6]
out = {}

# Username and password: the driver runs the basic handshake and uses the bearer token it gets.
with flight_sql.connect(uri, db_kwargs={"username": user, "password": password}) as conn:
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    tables = {}
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                name = f'{catalog["catalog_name"]}.{schema["db_schema_name"]}.{table["table_name"]}'
                tables[name] = [c["column_name"] for c in table["table_columns"] or []]
    out["tables"] = tables

    with conn.cursor() as cur:
        # A parameterised query: one day of the daily revenue table.
        cur.execute(
            "SELECT product_id, CAST(net_revenue AS VARCHAR) AS net, orders "
            "FROM daily_revenue_by_product WHERE order_date = CAST($1 AS DATE) "
            "ORDER BY product_id",
            parameters=(day,),
        )
        table = cur.fetch_arrow_table()
        out["param_schema"] = [f"{f.name}:{f.type}" for f in table.schema]
        out["param_rows"] = [
            f'{r["product_id"]}|{r["net"]}|{r["orders"]}' for r in table.to_pylist()
        ]

        # The whole table as a pandas frame.
        cur.execute("SELECT * FROM daily_revenue_by_product")
        frame = cur.fetch_df()
        out["pandas_rows"] = int(len(frame))
        out["pandas_units_sold"] = int(frame["units_sold"].sum())
        out["pandas_columns"] = list(frame.columns)

        # Errors reach the client with their status.
        errors = {}
        for name, sql in [
            ("bad_sql", "SELEC 1"),
            ("unknown_table", "SELECT * FROM no_such_table"),
            ("write", "CREATE TABLE t AS SELECT 1"),
        ]:
            try:
                cur.execute(sql)
                cur.fetchall()
                errors[name] = "no error"
            except adbc_driver_manager.Error as e:
                errors[name] = f"{type(e).__name__}: {e}"
        out["errors"] = errors

# A static token, given as the authorization header.
with flight_sql.connect(
    uri, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"}
) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM daily_revenue_by_product")
        out["token_count"] = cur.fetchone()[0]

# A wrong password.
try:
    with flight_sql.connect(uri, db_kwargs={"username": user, "password": "wrong"}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    out["wrong_password"] = "no error"
except adbc_driver_manager.Error as e:
    out["wrong_password"] = f"{type(e).__name__}: {e}"

print(json.dumps(out))
