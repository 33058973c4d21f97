"""Baton's adapter around SpiffWorkflow: the only runtime import of the library.

``serializer`` keeps workflow state in Baton's envelope, ``scripting`` routes
every expression and script through the sandbox, ``runtime`` loads, advances
and inspects workflows for the service layer.
"""
