"""The farm's web console: its pages and static files, and the event stream it reads."""
