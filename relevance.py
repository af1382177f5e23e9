"""How well the Inbox's find-before-create search finds what a customer means.

relevance_set.json holds a feedback log whose records share their words, and customers'
requests as they write them in Intercom, each labelled with the record it means (or none).
``evaluate()`` puts the log in an empty database, then for each request runs what the find
canvas runs: its first search, prefilled from the conversation (``search_prefill``), and the
search for the two or three words an agent would type instead; and measures, over the five
records the canvas shows (FIND_LIMIT):

- recall@5: the share of requests whose record is among them;
- MRR: the mean of 1/rank of that record (0 when it is not shown);
- false matches: of the requests that mean no record, the share shown something anyway.

It adds the log in one transaction and rolls it back: the database is left as it was.

    python relevance.py            # SQLite; PostgreSQL too when HEDWIG_TEST_POSTGRES_URL is set
    .ci/with-postgres .venv/bin/python relevance.py --misses   # both, and what each missed
    python relevance.py --database postgresql+psycopg://hedwig@/empty_database
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

import hedwig
from conftest import INITIALIZE, WORKSPACE_ID
from hedwig_app.canvases import InboxContext, find_canvas, search_prefill
from hedwig_app.records import reweigh_records
from hedwig_app.search import FIND_LIMIT
from models import Evidence, Feedback, customer_key, db

SET_FILE = Path(__file__).with_name("relevance_set.json")
SEARCHES = ("prefill", "typed")
# The customers behind the records' evidence: their names and emails are indexed beside their
# words, as in a real log.
CUSTOMERS = [
    ("Priya Raman", "priya@brightline.io"),
    ("Tom Becker", "tom.becker@hafenwerk.de"),
    ("Lucía Fernández", "lucia@estudiofdz.es"),
    ("Kenji Watanabe", "k.watanabe@sakuralabs.jp"),
    ("Amara Okafor", "amara@lagosgrid.ng"),
    ("Sophie Martin", "sophie.martin@gmail.com"),
    ("Daniel Novak", "dnovak@vltava.cz"),
    ("Chloé Dubois", "chloe@atelier-dubois.fr"),
    ("Ravi Shah", "ravi.shah@northwind.co.uk"),
    ("Emma Lindqvist", "emma@fjordsoft.se"),
    ("Mateo Rossi", "mateo@trattoria-rossi.it"),
    ("Hannah Kim", "hannah.kim@outlook.com"),
]


def evaluate(database_url: str, set_file: Path = SET_FILE) -> dict[str, Any]:
    """The find canvas measured on ``set_file``'s requests against its records, in the empty
    database at ``database_url`` (migrated if need be, its records rolled back): per search
    (prefill, typed), recall@5, MRR and the false-match rate; per request, what was shown."""
    relevance_set = json.loads(set_file.read_text())
    records, requests = relevance_set["records"], relevance_set["requests"]
    check_set(records, requests)
    with tempfile.TemporaryDirectory(prefix="hedwig-relevance-") as folder:
        app = hedwig.create_app(
            {
                "INSTANCE_PATH": folder,
                "SECRET_KEY": secrets.token_urlsafe(32),
                "DATABASE_URL": database_url,
                "BASE_URL": "https://hedwig.example",
            }
        )
        with app.app_context():
            try:
                held = db.session.scalar(select(func.count(Feedback.id)))
                if held:  # its records would share the search's window and its ranks
                    raise ValueError(f"{database_url} holds {held} records: give an empty one")
                keys = insert_log(records)
                shown = [ask(request, keys) for request in requests]
            finally:
                db.session.rollback()
                db.engine.dispose()
    return report(records, requests, shown)


def check_set(records: list[dict[str, Any]], requests: list[dict[str, Any]]) -> None:
    """Refuse a set whose keys repeat, or whose requests mean a record it does not hold."""
    keys = [record["key"] for record in records]
    if len(set(keys)) != len(keys):
        raise ValueError("relevance set: a record key is used twice")
    unknown = [r["id"] for r in requests if r["means"] is not None and r["means"] not in keys]
    if unknown:
        raise ValueError(f"relevance set: requests {unknown} mean records it does not hold")


def insert_log(records: list[dict[str, Any]]) -> dict[int, str]:
    """The records, in the Inbox's workspace, in bulk, each with its evidence; then what the
    app keeps beside them (customer count, the words searched), as the app computes it.
    Inserted in an order fixed by their keys, not the file's, so that a topic's records are
    spread over the log's history as in a real one. Returns each record's key by its id."""
    ordered = sorted(records, key=lambda record: hashlib.sha256(record["key"].encode()).digest())
    rows = [
        {
            "title": record["title"],
            "description": record.get("details", ""),
            "source": "intercom",
            "workspace_id": WORKSPACE_ID,
        }
        for record in ordered
    ]
    ids = list(
        db.session.scalars(
            insert(Feedback).returning(Feedback.id, sort_by_parameter_order=True), rows
        )
    )
    db.session.execute(insert(Evidence), list(evidence(ids, ordered)))
    reweigh_records(ids)
    db.session.flush()
    return {feedback_id: record["key"] for feedback_id, record in zip(ids, ordered, strict=True)}


def evidence(ids: list[int], records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A piece of evidence per quote (one without a quote for a record with none), each from
    another customer of CUSTOMERS in a conversation of its own."""
    for n, (feedback_id, record) in enumerate(zip(ids, records, strict=True)):
        for k, quote in enumerate(record.get("quotes") or [""]):
            name, email = CUSTOMERS[(n + k * 5) % len(CUSTOMERS)]
            yield {
                "feedback_id": feedback_id,
                "source": "intercom",
                "workspace_id": WORKSPACE_ID,
                "conversation_id": f"{900_000 + n * 10 + k}",
                "customer_name": name,
                "customer_email": email,
                "customer_key": customer_key(email, WORKSPACE_ID, None, name),
                "quote": quote,
            }


def ask(request: dict[str, Any], keys: dict[int, str]) -> dict[str, Any]:
    """What the find canvas shows for ``request``: first for "Record feedback" (its search
    prefilled from the conversation), then for the words the agent types."""
    conversation = INITIALIZE["conversation"]
    payload = {
        **INITIALIZE,
        "component_id": "record",
        "conversation": {
            **conversation,
            "source": {
                **conversation["source"],
                "subject": request["subject"],
                "body": request["message"],
            },
        },
    }
    context = InboxContext.from_payload(payload)
    queries = {"prefill": search_prefill(context), "typed": request["typed"]}
    return {
        search: {"query": query, "shown": shown_keys(find_canvas(context, query), keys)}
        for search, query in queries.items()
    }


def shown_keys(canvas: dict[str, Any], keys: dict[int, str]) -> list[str]:
    """The keys of the records a find canvas offers, in its order (its items "match-<id>")."""
    found = []
    for component in canvas["canvas"]["content"]["components"]:
        for item in component.get("items", []) if component["type"] == "list" else []:
            if item["id"].startswith("match-"):
                found.append(keys[int(item["id"].removeprefix("match-"))])
    return found


def report(
    records: list[dict[str, Any]], requests: list[dict[str, Any]], shown: list[dict[str, Any]]
) -> dict[str, Any]:
    """The figures per search, and per request what each search showed and the rank of the
    record it means (0: not shown)."""
    details = []
    for request, answers in zip(requests, shown, strict=True):
        for answer in answers.values():
            keys = answer["shown"]
            answer["rank"] = keys.index(request["means"]) + 1 if request["means"] in keys else 0
        details.append({"id": request["id"], "means": request["means"], **answers})
    return {
        "records": len(records),
        "requests": len(requests),
        "meaning_nothing": sum(detail["means"] is None for detail in details),
        **{search: figures(details, search) for search in SEARCHES},
        "details": details,
    }


def figures(details: list[dict[str, Any]], search: str) -> dict[str, Any]:
    """recall@5, MRR and shown nothing over the requests that mean a record; false matches
    over those that mean none."""
    meant = [detail[search] for detail in details if detail["means"] is not None]
    nothing = [detail[search] for detail in details if detail["means"] is None]
    return {
        "recall_at_5": round(sum(answer["rank"] > 0 for answer in meant) / len(meant), 3),
        "mrr": round(sum(1 / answer["rank"] for answer in meant if answer["rank"]) / len(meant), 3),
        "false_matches": round(sum(bool(answer["shown"]) for answer in nothing) / len(nothing), 3),
        "shown_nothing": sum(not answer["shown"] for answer in meant),
    }


def summary(result: dict[str, Any]) -> str:
    """The figures in a phrase: "recall@5 0.72 (prefill) → 0.94 (typed), MRR 0.55 → 0.86,
    false matches 7/8 → 5/8"."""
    prefill, typed, nothing = result["prefill"], result["typed"], result["meaning_nothing"]
    return (
        f"recall@5 {prefill['recall_at_5']:.2f} (prefill) → {typed['recall_at_5']:.2f} (typed), "
        f"MRR {prefill['mrr']:.2f} → {typed['mrr']:.2f}, false matches "
        f"{round(prefill['false_matches'] * nothing)}/{nothing} → "
        f"{round(typed['false_matches'] * nothing)}/{nothing}"
    )


def table(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    lines = [
        f"Find relevance on {first['requests']} requests ({first['meaning_nothing']} meaning "
        f"no record) / {first['records']} records, the {FIND_LIMIT} first shown:",
        f"{'database':<12}{'search':<9}{'recall@5':>9}{'MRR':>7}{'false matches':>15}"
        f"{'shown nothing':>15}",
    ]
    for name, result in results.items():
        for search in SEARCHES:
            figures = result[search]
            lines.append(
                f"{name:<12}{search:<9}{figures['recall_at_5']:>9.3f}{figures['mrr']:>7.3f}"
                f"{figures['false_matches']:>15.3f}{figures['shown_nothing']:>15}"
            )
    return "\n".join(lines)


def misses(result: dict[str, Any]) -> str:
    """Each request whose record is not shown first, with what was searched and shown."""
    lines = []
    for detail in result["details"]:
        for search in SEARCHES:
            answer = detail[search]
            if answer["rank"] != 1 and (detail["means"] or answer["shown"]):
                shown = ", ".join(answer["shown"]) or "(nothing)"
                lines.append(
                    f"{detail['id']} ({search}, rank {answer['rank'] or '-'}, means "
                    f"{detail['means'] or 'no record'}): {answer['query']!r} → {shown}"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", action="append", help="an empty database's URL (repeatable)")
    parser.add_argument("--misses", action="store_true", help="list the requests not found first")
    options = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        databases = options.database or [f"sqlite:///{Path(folder) / 'relevance.db'}"]
        if not options.database and os.environ.get("HEDWIG_TEST_POSTGRES_URL"):
            databases.append(os.environ["HEDWIG_TEST_POSTGRES_URL"])
        for url in databases:
            name = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
            results[name if name not in results else url] = evaluate(url)
    print(table(results))
    if options.misses:
        for name, result in results.items():
            print(f"\n{name}: requests whose record is not shown first\n{misses(result)}")


if __name__ == "__main__":
    main()
