"""``HOST:PORT`` addresses, parsed once for every flag that takes one.

``[V6]:PORT`` is accepted and the brackets removed. A listen address may ask for port 0
(any free port); an address to dial may not.
"""

from __future__ import annotations


class AddressError(ValueError):
    """``text`` is not HOST:PORT; the message names the text and what is wrong with it."""


def parse_host_port(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); raises AddressError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise AddressError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    lowest = 0 if allow_port_zero else 1
    if not (port.isascii() and port.isdigit()) or not lowest <= int(port) <= 65535:
        raise AddressError(f"port must be {lowest}-65535, got {port!r} in {text!r}")
    return host, int(port)


def parse_listen(text: str, field: str) -> tuple[str, int]:
    """A listen address for ``field`` (a flag name); port 0 picks a free port. Raises AddressError."""
    try:
        return parse_host_port(text, allow_port_zero=True)
    except AddressError as e:
        raise AddressError(f"{field}: {text!r} is not HOST:PORT (e.g. 0.0.0.0:50051): {e}") from None


def parse_dial(text: str, field: str) -> tuple[str, int]:
    """An address to connect to, for ``field`` (a flag name). Raises AddressError."""
    try:
        return parse_host_port(text)
    except AddressError as e:
        raise AddressError(f"{field}: {text!r} is not HOST:PORT: {e}") from None
