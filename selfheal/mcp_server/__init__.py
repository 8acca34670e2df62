"""selfheal as an MCP server: a coding agent lists incidents, reads one with its full context,
finds similar ones, asks which playbook applies, and approves or rejects as its person.

`tools` holds the tools, each a call to the HTTP API with that person's credentials; `selfheal mcp`
serves them over stdio with `SELFHEAL_URL` and `SELFHEAL_TOKEN`, and `http` serves them under the
API at `/mcp` (streamable HTTP) with the caller's own bearer token. Named `mcp_server` so that it
never shadows the `mcp` SDK it is built on.
"""
