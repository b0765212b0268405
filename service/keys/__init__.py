"""API keys' rows; issuing, resolving and scope checks are `service.auth`."""
