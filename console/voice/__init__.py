"""Voice requests and warm transfers: the Groq gateway and the call-centre API (which the
voice and transfer kinds see as `ctx.calls`, the port in console/kinds/calls.py)."""
