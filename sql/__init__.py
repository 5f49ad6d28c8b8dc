"""SQL files of the product: numbered migrations and named report queries."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SQL_DIR = Path(str(resources.files(__name__)))


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, text) of every migration in ``sql/migrations``, in order."""
    out = []
    for path in sorted((SQL_DIR / "migrations").glob("*.sql")):
        number, _, name = path.stem.partition("_")
        out.append((int(number), name, path.read_text(encoding="utf-8")))
    return out


def report(name: str) -> str:
    """The text of ``sql/reports/<name>.sql`` (parameters bound by clickhouse-connect)."""
    return (SQL_DIR / "reports" / f"{name}.sql").read_text(encoding="utf-8")


def statements(text: str) -> list[str]:
    """Split a migration into statements on lines that end with ';' (comments dropped)."""
    out, cur = [], []
    for line in text.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(cur).rstrip().rstrip(";"))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out
