"""A fake of the Jira REST API v2 (with ADF validation) on a real socket, for the real `jira` client."""

from tests.support.jira.fake import ADF_REQUIRED, JiraFake, adf_problem

__all__ = ["ADF_REQUIRED", "JiraFake", "adf_problem"]
