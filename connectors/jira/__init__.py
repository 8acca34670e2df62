"""Jira in one home: the tracker client (tracker), its settings section (settings) and the parsing
of its outgoing webhook into decisions (webhook). Import the module you need; this package exports
nothing, so reading the settings never loads the `jira` client.
"""
