"""Hedwig's tables, one module per owner; ``models.py`` beside it is their one import point.

Imports run one way, down this list: a module imports from those above it, never from one
below it. The package imports nothing from ``hedwig_app``, and nothing here imports them: the
app reads the tables through ``models.py``.

    base      the database and its base, every length, the shared vocabularies and helpers
    people    teammates: users, sign-ins, invite and reset links, API tokens and their keys
    intercom  connected workspaces, spent OAuth states, the customers' companies
    records   the feedback records, their evidence, merged ids, linked issues
    loop      status changes, the notes and replies they send, reply texts, webhooks
"""
