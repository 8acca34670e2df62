"""Investigator evals (`make eval`); see harness.py for the case format."""
