"""The JSON API's OpenAPI 3.1 document, served at /api/v1/openapi.json: every route, its
parameters, its request body and each answer's schema. The tests hold each answer the API
gives to its schema here. Imports nothing of Hedwig's but models.
"""

from __future__ import annotations

from typing import Any

from models import IMPORTANCES, STATUSES

TEXT = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
NULLABLE_TEXT = {"type": ["string", "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


SCHEMAS: dict[str, Any] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": TEXT,
                    "message": TEXT,
                    "fields": {"type": "object", "additionalProperties": TEXT},
                },
                ["code", "message"],
            )
        }
    ),
    "Issue": obj({"tracker": TEXT, "name": TEXT, "url": TEXT}),
    "Record": obj(
        {
            "id": {"type": "integer"},
            "title": TEXT,
            "details": TEXT,
            "status": {"enum": list(STATUSES)},
            "customers": COUNT,
            "companies": COUNT,
            "monthly_spend": COUNT,
            "url": {"type": "string", "format": "uri"},
            "api_url": {"type": "string", "format": "uri"},
            "created_at": TIME,
            "updated_at": TIME,
            "issues": {"type": "array", "items": ref("Issue")},
        }
    ),
    "Evidence": obj(
        {
            "id": {"type": "integer"},
            "customer": obj({"name": TEXT, "email": TEXT}),
            "company": {
                "oneOf": [
                    {"type": "null"},
                    obj({"name": NULLABLE_TEXT, "plan": NULLABLE_TEXT, "monthly_spend": COUNT}),
                ]
            },
            "quote": TEXT,
            "conversation_url": NULLABLE_TEXT,
            "agent": NULLABLE_TEXT,
            "importance": {"enum": list(IMPORTANCES)},
            "created_at": TIME,
        }
    ),
    "StatusChange": obj(
        {
            "from": TEXT,
            "to": TEXT,
            "message": TEXT,
            "by": NULLABLE_TEXT,
            "issue_url": NULLABLE_TEXT,
            "changed_at": TIME,
        }
    ),
    "RecordWithEvidence": {
        "allOf": [
            ref("Record"),
            obj(
                {
                    "evidence": {"type": "array", "items": ref("Evidence")},
                    "history": {"type": "array", "items": ref("StatusChange")},
                }
            ),
        ]
    },
    "RecordList": obj(
        {
            "records": {"type": "array", "items": ref("Record")},
            "next": {"type": ["string", "null"], "format": "uri"},
        }
    ),
    "Merged": obj({"moved": COUNT, "record": ref("RecordWithEvidence")}),
    "EvidenceAdded": {"allOf": [ref("Evidence"), obj({"record": ref("Record")})]},
    "NewRecord": obj(
        {
            "title": {"type": "string", "maxLength": 200},
            "details": TEXT,
            "customer_name": TEXT,
            "customer_email": TEXT,
            "quote": TEXT,
            "importance": {"enum": list(IMPORTANCES)},
        },
        ["title"],
    ),
    "RecordChange": obj({"title": TEXT, "details": TEXT}, []),
    "Merge": obj({"into": {"type": "integer"}}),
    "NewEvidence": obj(
        {
            "customer_name": TEXT,
            "customer_email": TEXT,
            "quote": TEXT,
            "conversation_id": TEXT,
            "workspace_id": TEXT,
            "importance": {"enum": list(IMPORTANCES)},
        },
        [],
    ),
    "StatusRequest": obj(
        {
            "status": {"enum": list(STATUSES)},
            "message": TEXT,
            "notify": {"type": "boolean"},
            "reply": TEXT,
        },
        ["status"],
    ),
}

ERRORS = {
    "400": "Malformed: not JSON, or a parameter not understood",
    "401": "No live token",
    "404": "No such record",
    "413": "The body is too large",
    "429": "Over the token's rate limit: see Retry-After",
}


def answers(status: str, schema: str | None, description: str, *errors: str) -> dict[str, Any]:
    """An operation's responses: its success (``schema`` None: no body), and its errors."""
    found: dict[str, Any] = {status: {"description": description}}
    if schema:
        found[status]["content"] = {"application/json": {"schema": ref(schema)}}
    error = {"application/json": {"schema": ref("Error")}}
    for code in ("400", "401", "429", *errors):
        found[code] = {"description": ERRORS.get(code, "Refused"), "content": error}
    return found


def body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


RECORD_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "The same key and body within 24 hours get the first answer again.",
}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


LIST_PARAMETERS = [
    query("status", {"enum": list(STATUSES)}, "Only records with this status."),
    query("q", TEXT, "Words to search for, best match first."),
    query("sort", {"enum": ["best", "newest", "customers", "companies", "revenue"]}, "Order."),
    query("plan", TEXT, "Only records with a customer whose company is on this plan."),
    query("updated_since", TIME, "Only records changed since."),
    query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Records a page (50)."),
    query("cursor", TEXT, "From the previous page's next."),
]


ONE = "/records/{id}"


def paths() -> dict[str, Any]:
    return (
        record_paths()
        | action_paths()
        | {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        }
    )


def record_paths() -> dict[str, Any]:
    moved = {
        "301": {
            "description": "Merged: Location is the record it went into",
            "content": {"application/json": {"schema": ref("Error")}},
        }
    }
    return {
        "/records": {
            "get": {
                "summary": "List records, a page at a time",
                "parameters": LIST_PARAMETERS,
                "responses": answers("200", "RecordList", "A page of records"),
            },
            "post": {
                "summary": "Create a record",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": body("NewRecord"),
                "responses": answers("201", "RecordWithEvidence", "Created", "409", "413", "422"),
            },
        },
        ONE: {
            "parameters": [RECORD_ID],
            "get": {
                "summary": "A record, its evidence and its status history",
                "responses": answers("200", "RecordWithEvidence", "The record", "404") | moved,
            },
            "patch": {
                "summary": "Change a record's title or details",
                "requestBody": body("RecordChange"),
                "responses": answers("200", "RecordWithEvidence", "Changed", "404", "409", "422"),
            },
            "delete": {
                "summary": "Delete a record (owners)",
                "responses": answers("204", None, "Deleted", "403", "404", "409"),
            },
        },
    }


def action_paths() -> dict[str, Any]:
    return {
        ONE + "/merge": {
            "parameters": [RECORD_ID, IDEMPOTENCY_KEY],
            "post": {
                "summary": "Merge a record into another (owners)",
                "requestBody": body("Merge"),
                "responses": answers("200", "Merged", "Merged", "403", "404", "409", "422"),
            },
        },
        ONE + "/evidence": {
            "parameters": [RECORD_ID, IDEMPOTENCY_KEY],
            "post": {
                "summary": "Add a customer's evidence to a record",
                "requestBody": body("NewEvidence"),
                "responses": answers("201", "EvidenceAdded", "Added", "404", "409", "422"),
            },
        },
        ONE + "/status": {
            "parameters": [RECORD_ID, IDEMPOTENCY_KEY],
            "post": {
                "summary": "Change a record's status, noting and replying to its conversations",
                "requestBody": body("StatusRequest"),
                "responses": answers("200", "RecordWithEvidence", "Changed", "404", "409", "422"),
            },
        },
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    """The document, its server the API's own URL."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hedwig", "version": "1"},
        "servers": [{"url": server_url}],
        "security": [{"token": []}],
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token, made on your account page.",
                }
            },
        },
    }
