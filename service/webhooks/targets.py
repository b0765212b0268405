"""Where a webhook may point: http(s), and no private network unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from service.errors import ValidationFailed


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuses (422) a URL that is not http(s) or whose host resolves to a loopback,
    link-local, private or otherwise non-public address (SPEC section 12), so that
    a key cannot make the service call into its own network. Checked at creation;
    the worker checks again before every attempt, since DNS answers change."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError as err:
        raise ValidationFailed(f"a webhook url must be a valid URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("a webhook url must be http:// or https:// with a host")
    if allow_private:
        return
    for address in await _addresses(parts.hostname, port):
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise ValidationFailed(
                f"webhook host {parts.hostname!r} resolves to {ip}, a non-public address; "
                "such targets need LEDGER_WEBHOOK_ALLOW_PRIVATE=1"
            )


async def _addresses(host: str, port: int | None) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or 443, type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as err:
        raise ValidationFailed(f"webhook host {host!r} does not resolve: {err}") from None
    return [str(info[4][0]) for info in infos]
