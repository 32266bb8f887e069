"""The web side of WorkRate Messages: team app, client portal, attachments, live updates and JSON API.

app.py builds the Flask app (create_app) and registers one blueprint per audience; context.py holds
what the blueprints share (the app's Settings, the CSRF guard). The blueprints never import app.py,
so the package has no import cycle.
"""
