"""People (SPEC section 11): proxies (亲情代理), by which a member's resident key
acts for another member within the scopes that member granted."""
