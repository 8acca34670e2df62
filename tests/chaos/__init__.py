"""Chaos trials on the real loop (`make chaos`); see __main__.py for what is run and checked.

Under tests/ rather than bench/ because the tracker that answers 5xx or times out is the Jira
fake (tests/support/jira), and source packages never import the tests.
"""
