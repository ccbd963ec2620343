"""The HTTP face: the WSGI app, routes, security policy and views."""
