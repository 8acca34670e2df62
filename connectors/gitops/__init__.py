"""GitOps connectors: forges (GitHub, GitLab, Gitea/Forgejo) for pull/merge requests, Argo CD and
Flux for syncs, and the forges' webhook signatures."""
