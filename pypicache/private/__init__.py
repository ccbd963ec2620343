"""Private packages: uploads, their checks, and projects that shadow or merge the upstream."""
