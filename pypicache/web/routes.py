"""Every URL the index answers."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_route("health", "/health")
    config.add_route("status", "/api/status")
    config.add_route("metrics", "/metrics")
    config.add_route("simple_index", "/simple/")
    config.add_route("simple_project", "/simple/{project}/")
    # The filename is the last path segment, as pip and uv expect (they take it from the URL).
    config.add_route("file", "/packages/{project}/{filename}")
    # Uploads: PyPI's URL, the same without the slash, and pypiserver's "/" (twine
    # refuses any redirect, so each one answers directly).
    config.add_route("upload", "/legacy/")
    config.add_route("upload_legacy_no_slash", "/legacy")
    config.add_route("upload_root", "/", request_method="POST")
    # The admin web page (login required); every change is a POST to a URL of its own.
    config.add_route("admin", "/admin/")
    config.add_route("admin_login", "/admin/login")
    config.add_route("admin_logout", "/admin/logout")
    config.add_route("admin_projects", "/admin/projects/")
    config.add_route("admin_project", "/admin/projects/{project}/")
    config.add_route("admin_project_refresh", "/admin/projects/{project}/refresh")
    config.add_route("admin_project_purge", "/admin/projects/{project}/purge")
    config.add_route("admin_project_merge", "/admin/projects/{project}/merge")
    config.add_route("admin_file_yank", "/admin/projects/{project}/yank")
    config.add_route("admin_file_delete", "/admin/projects/{project}/delete")
    config.add_route("admin_upload", "/admin/upload")
    config.add_route("admin_users", "/admin/users/")
    config.add_route("admin_user_role", "/admin/users/{user}/role")
    config.add_route("admin_user_password", "/admin/users/{user}/password")
    config.add_route("admin_tokens", "/admin/tokens/")
    config.add_route("admin_token_revoke", "/admin/tokens/{token_id}/revoke")
    config.add_route("admin_alarms", "/admin/alarms/")
    config.add_route("admin_alarms_ack", "/admin/alarms/acknowledge")
    config.add_route("admin_shadowed", "/admin/shadowed/")
    config.add_route("admin_audit", "/admin/audit/")
    config.add_static_view("admin/static", "pypicache.admin:static", cache_max_age=3600)
