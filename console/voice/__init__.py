"""Voice requests and warm transfers: the Groq gateway, summaries, and the call-centre API."""
