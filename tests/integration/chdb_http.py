"""A ClickHouse HTTP endpoint over chDB, in a process of its own: one ClickHouse for several processes.

chDB opens a data path in one process only, so several ``opscenter worker`` processes cannot
share an embedded chDB. Production shares one ClickHouse server over HTTP
(``OPSCENTER_CLICKHOUSE_DSN=http://…:8123``), and a ClickHouse server is not installable here.
This module serves the part of ClickHouse's HTTP interface that clickhouse-connect's HTTP
client uses (``GET /ping``; ``POST /`` with the query in the body or in ``?query=`` followed by
the insert data; ``param_*`` bound parameters; settings as URL parameters; lz4/zstd/gzip
request bodies; errors as HTTP 500 with ``X-ClickHouse-Exception-Code``) and runs every
statement on a real chDB engine (the ClickHouse 26.9 code) on one data path. The workers talk
to it exactly as they would to a ClickHouse server, through ``clickhouse_connect``'s HTTP
client, so ``sink_offsets``, insert deduplication tokens and the materialized views behave as
on one shared server. Statements are executed one at a time (one chDB connection).

Test infrastructure only (docs/faults.md, "Several workers, one ClickHouse"):

    python -m tests.integration.chdb_http --path /tmp/ch --port 18123
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: URL parameters of the HTTP interface that are not query settings
TRANSPORT = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "quota_key", "compress", "decompress", "wait_end_of_query", "buffer_size", "client_protocol_version",
    "role", "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
    "user", "password",
}  # fmt: skip
INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE | re.DOTALL)
#: an INSERT whose data follows its text in the body: ``INSERT INTO t (a, b) FORMAT Native\n<data>``
INSERT_HEAD_RE = re.compile(rb"^\s*INSERT\s+INTO\s+[^\n]+?\s+FORMAT\s+\w+[ \t]*\r?\n", re.IGNORECASE)
FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
CODE_RE = re.compile(r"Code:\s*(\d+)")
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _settings_clause(settings: dict[str, str]) -> str:
    parts = [f"{k} = {_quote(v)}" for k, v in settings.items() if SETTING_NAME.match(k)]
    return f" SETTINGS {', '.join(parts)}" if parts else ""


def _decompress(data: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    if encoding in ("", "identity"):
        return data
    if encoding == "gzip":
        import gzip

        return gzip.decompress(data)
    if encoding == "deflate":
        import zlib

        return zlib.decompress(data)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class Engine:
    """One chDB connection; statements run one at a time, each in the database it names."""

    def __init__(self, path: str) -> None:
        import chdb

        os.makedirs(path, exist_ok=True)
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()

    def run(self, sql: str, fmt: str, params: dict[str, str], database: str | None) -> bytes:
        with self.lock:
            if database:
                self.conn.query(f"USE `{database}`", "TabSeparated")
            else:
                self.conn.query("USE default", "TabSeparated")
            res = self.conn.query(sql, fmt, params=params)
            return res.bytes() if hasattr(res, "bytes") else bytes(res)


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        self.send_header("X-ClickHouse-Timezone", "UTC")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if url.path in ("/ping", "/") and not dict(parse_qsl(url.query)).get("query"):
            self._reply(200, b"Ok.\n")
            return
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        self._handle(body)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _handle(self, body: bytes) -> None:
        qid = str(uuid.uuid4())
        try:
            body = _decompress(body, self.headers.get("Content-Encoding", ""))
            args = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            qid = args.get("query_id") or qid
            params = {k[6:]: v for k, v in args.items() if k.startswith("param_")}
            settings = {k: v for k, v in args.items() if k not in TRANSPORT and not k.startswith("param_")}
            database = args.get("database") or None
            out, fmt = self._execute(args.get("query"), body, params, settings, database, args)
            self._reply(200, out, {"X-ClickHouse-Query-Id": qid, "X-ClickHouse-Format": fmt,
                                   "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"})})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - every failure is a ClickHouse error to the client
            text = str(exc)
            m = CODE_RE.search(text)
            code = m.group(1) if m else "1002"
            if not text.startswith("Code:"):
                text = f"Code: {code}. DB::Exception: {text}"
            self._reply(500, (text + "\n").encode(), {"X-ClickHouse-Exception-Code": code, "X-ClickHouse-Query-Id": qid})

    def _execute(
        self, query: str | None, body: bytes, params: dict[str, str], settings: dict[str, str],
        database: str | None, args: dict[str, str],
    ) -> tuple[bytes, str]:  # fmt: skip
        if query is None:
            head = INSERT_HEAD_RE.match(body)
            if head is not None:
                query, body = head.group(0).decode().strip(), body[head.end() :]
        if query is not None and body:
            m = INSERT_RE.match(query)
            if m is None:  # ClickHouse appends the body to the query
                return self._query(query + "\n" + body.decode(), params, settings, database, args)
            target, fmt = m.group(1), m.group(2)
            with tempfile.NamedTemporaryFile(suffix="." + fmt.lower(), delete=False) as tmp:
                tmp.write(body)
            try:
                sql = f"INSERT INTO {target} FROM INFILE {_quote(tmp.name)}{_settings_clause(settings)} FORMAT {fmt}"
                self.engine.run(sql, "TabSeparated", params, database)
            finally:
                os.unlink(tmp.name)
            return b"", fmt
        return self._query(query if query is not None else body.decode(), params, settings, database, args)

    def _query(
        self, sql: str, params: dict[str, str], settings: dict[str, str], database: str | None, args: dict[str, str]
    ) -> tuple[bytes, str]:
        sql = sql.strip().rstrip(";")
        m = FORMAT_RE.search(sql)
        fmt = m.group(1) if m else args.get("default_format") or "TabSeparated"
        if m:
            sql = sql[: m.start()].rstrip()
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if settings and head in ("SELECT", "WITH", "INSERT", "SHOW", "DESCRIBE", "DESC", "EXISTS"):
            sql += _settings_clause(settings)
        return self.engine.run(sql, fmt, params, database), fmt


def serve(path: str, host: str, port: int) -> None:
    Handler.engine = Engine(path)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"chdb-http listening on {host}:{port} ({path})", flush=True)
    server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    serve(a.path, a.host, a.port)


if __name__ == "__main__":
    main()
