"""Issues that follow the work: a record links to the GitHub issue or pull request, the Linear
issue or the Jira issue where its work happens. Owns reading a link's address (which
tracker, which issue, and the key a webhook names it by), linking and unlinking, and the
records an issue links. Imports records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from hedwig_app.records import hold_records
from models import ISSUE_URL_MAX, Feedback, IssueLink, db

GITHUB_PATH = re.compile(
    r"/(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/(?P<repo>[A-Za-z0-9._-]{1,100})"
    r"/(?P<kind>issues|pull)/(?P<number>[1-9][0-9]{0,9})(?:/[^?#]*)?"
)
LINEAR_PATH = re.compile(
    r"/(?P<workspace>[A-Za-z0-9_-]{1,64})/issue/(?P<identifier>[A-Za-z][A-Za-z0-9_]{0,19}"
    r"-[1-9][0-9]{0,9})(?:/[^?#]*)?"
)
JIRA_PATH = re.compile(r"/browse/(?P<key>[A-Za-z][A-Za-z0-9_]{0,49}-[1-9][0-9]{0,9})/?")
EXAMPLES = (
    "https://github.com/acme/app/issues/12, https://linear.app/acme/issue/ENG-12 or "
    "https://acme.atlassian.net/browse/KEY-12"
)


@dataclass(frozen=True)
class Issue:
    """An issue as a link names it: its tracker, its key, and its address."""

    tracker: str
    key: str
    url: str


def github_key(repository: str, number: int | str) -> str:
    """A GitHub issue's or pull request's key (they share a repository's numbers); GitHub
    matches owner and repository names in any case."""
    return f"github:{repository.lower()}#{number}"


def linear_key(identifier: str) -> str:
    """A Linear issue's key: its identifier, as "ENG-12"."""
    return f"linear:{identifier.upper()}"


def read_issue_url(text: str) -> Issue:
    """The issue a pasted address names, or ValueError with a sentence saying what works."""
    text = text.strip()
    if not text:
        raise ValueError(f"Paste the issue's address, like {EXAMPLES}.")
    if len(text) > ISSUE_URL_MAX:
        raise ValueError(f"An issue's address is at most {ISSUE_URL_MAX} characters.")
    try:
        parts = urlsplit(text)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        host, port, parts = "", None, None
    if parts is None or parts.scheme != "https" or not host or parts.username or parts.password:
        raise ValueError(f"That is not an https address of an issue: use one like {EXAMPLES}.")
    if host in ("github.com", "www.github.com") and port is None:
        found = GITHUB_PATH.fullmatch(parts.path)
        if found:
            owner, repo, kind, number = found.group("owner", "repo", "kind", "number")
            url = f"https://github.com/{owner}/{repo}/{kind}/{number}"
            return Issue("github", github_key(f"{owner}/{repo}", number), url)
        raise ValueError("A GitHub link names an issue or a pull request: …/owner/repo/issues/12.")
    if host == "linear.app" and port is None:
        found = LINEAR_PATH.fullmatch(parts.path)
        if found:
            workspace, identifier = found.group("workspace", "identifier")
            url = f"https://linear.app/{workspace}/issue/{identifier.upper()}"
            return Issue("linear", linear_key(identifier), url)
        raise ValueError("A Linear link names an issue: https://linear.app/acme/issue/ENG-12.")
    found = JIRA_PATH.fullmatch(parts.path)
    if found:
        netloc = host if port is None else f"{host}:{port}"
        key = found.group("key").upper()
        return Issue("jira", f"jira:{netloc}/{key}", f"https://{netloc}/browse/{key}")
    raise ValueError(f"Hedwig links GitHub, Linear and Jira issues, like {EXAMPLES}.")


def link_issue(record: Feedback, issue: Issue, user_id: int | None) -> IssueLink | None:
    """Link the record to the issue; None when it links it already. The caller commits;
    RecordGone when the record was deleted or merged meanwhile."""
    hold_records(record)
    linked = db.session.scalar(
        select(IssueLink).where(
            IssueLink.feedback_id == record.id, IssueLink.issue_key == issue.key
        )
    )
    if linked is not None:
        return None
    link = IssueLink(
        feedback_id=record.id,
        tracker=issue.tracker,
        issue_key=issue.key,
        url=issue.url,
        created_by_id=user_id,
    )
    db.session.add(link)
    db.session.flush()
    return link


def records_linking(key: str) -> list[int]:
    """The ids of the records that link the issue, lowest first."""
    return list(
        db.session.scalars(
            select(IssueLink.feedback_id)
            .where(IssueLink.issue_key == key)
            .order_by(IssueLink.feedback_id)
        )
    )
