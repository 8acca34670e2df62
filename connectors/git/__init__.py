"""Git, one module per concern, imported by their own names (nothing is re-exported here).

`process` runs every git command (worker environment, fixed options, timeouts, GitError);
`repo` is what a remediation does to a repository (worktrees, fix and rollback commits, push);
`history` reads commits, diffs and stats without touching any work tree.
"""
