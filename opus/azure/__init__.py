"""The Azure Functions runtime: the Durable orchestrator and the adapters that reach Azure services.

`function_app.py` registers and wires what lives here; nothing in this package creates an app object.
"""
