"""The cache: project pages and files from the upstream, kept consistent with it."""
