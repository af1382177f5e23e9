"""Hedwig's tables, mapped: each lives in the module of ``hedwig_schema/`` that owns it, and
every name the app, the tests and the scripts use is imported from here.

- ``base``: ``db`` and its ``Base``, every ``*_MAX`` length, the statuses and importances,
  the preview's workspace, and the helpers (``plural``, ``utcnow``, ``normalize_email``,
  ``is_email``, ``customer_key``, ``intercom_web_url``, ``token_cipher``).
- ``people``: users (their roles and password hashing), their sign-ins and the links that
  invite them or reset their passwords, failed sign-ins, API tokens and Idempotency-Keys.
- ``intercom``: Intercom connections, used OAuth states, the customers' companies as
  Intercom knows them and each contact's company.
- ``records``: the feedback records with the evidence that backs them, merged records' ids,
  and the issues records link to.
- ``loop``: the records' status changes, the notes and replies those changes send to Intercom
  conversations, the replies' texts, incoming webhook deliveries, and outgoing webhooks'
  endpoints and deliveries.

Each length a column allows is named once (in ``base``), and every validator in hedwig_app
uses the name. Times are stored as naive UTC datetimes, the one form every database keeps the
same way.
"""

from __future__ import annotations

from hedwig_schema.base import (
    CUSTOMER_KEY_MAX,
    CUSTOMERS_TEXT_MAX,
    DEFAULT_IMPORTANCE,
    DESCRIPTION_MAX,
    EMAIL_MAX,
    ID_MAX,
    IMPORTANCE_MAX,
    IMPORTANCES,
    ISSUE_KEY_MAX,
    ISSUE_URL_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    PREVIEW_WORKSPACE_ID,
    QUOTE_MAX,
    REGION_MAX,
    REPLY_MAX,
    STATE_MAX,
    STATUSES,
    TITLE_MAX,
    WEBHOOK_URL_MAX,
    Base,
    customer_key,
    db,
    intercom_web_url,
    is_email,
    normalize_email,
    plural,
    token_cipher,
    utcnow,
)
from hedwig_schema.intercom import (
    COMPANY_FRESH_SECONDS,
    Company,
    ContactCompany,
    IntercomConnection,
    UsedOAuthState,
)
from hedwig_schema.loop import (
    WEBHOOK_EVENTS,
    Note,
    OutgoingDelivery,
    ReplyTemplate,
    StatusChange,
    WebhookDelivery,
    WebhookEndpoint,
)
from hedwig_schema.people import (
    PASSWORD_METHOD,
    ROLES,
    AccountLink,
    ApiToken,
    FailedSignIn,
    IdempotencyKey,
    SignInSession,
    User,
)
from hedwig_schema.records import TRACKERS, Evidence, Feedback, IssueLink, MergedFeedback

__all__ = [
    "COMPANY_FRESH_SECONDS",
    "CUSTOMERS_TEXT_MAX",
    "CUSTOMER_KEY_MAX",
    "DEFAULT_IMPORTANCE",
    "DESCRIPTION_MAX",
    "EMAIL_MAX",
    "ID_MAX",
    "IMPORTANCES",
    "IMPORTANCE_MAX",
    "ISSUE_KEY_MAX",
    "ISSUE_URL_MAX",
    "MESSAGE_MAX",
    "NAME_MAX",
    "PASSWORD_METHOD",
    "PREVIEW_WORKSPACE_ID",
    "QUOTE_MAX",
    "REGION_MAX",
    "REPLY_MAX",
    "ROLES",
    "STATE_MAX",
    "STATUSES",
    "TITLE_MAX",
    "TRACKERS",
    "WEBHOOK_EVENTS",
    "WEBHOOK_URL_MAX",
    "AccountLink",
    "ApiToken",
    "Base",
    "Company",
    "ContactCompany",
    "Evidence",
    "FailedSignIn",
    "Feedback",
    "IdempotencyKey",
    "IntercomConnection",
    "IssueLink",
    "MergedFeedback",
    "Note",
    "OutgoingDelivery",
    "ReplyTemplate",
    "SignInSession",
    "StatusChange",
    "UsedOAuthState",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "customer_key",
    "db",
    "intercom_web_url",
    "is_email",
    "normalize_email",
    "plural",
    "token_cipher",
    "utcnow",
]
