"""The web app under /app/ (SPEC section 14): server-rendered pages for residents,
tills, organisers and operators, on the same use cases and the same authorisation
as the API. `routes()` is what `service.app` mounts."""
