"""Which network addresses Load Audio from URL (and result files from outside fal's own file
hosts) may reach: public ones only.

ComfyUI is often shared on a LAN, and a workflow someone shares can hold any URL: without
this, "Load Audio from URL" (or a model's response naming a file anywhere) would let it probe
the server's own network (routers, admin pages, the cloud metadata service that hands out
credentials). Every host is resolved and every address it resolves to must be public; this
is checked for the first URL and for every redirect hop (an httpx request hook), and again
at connect time for direct connections (the address connected to is the one checked, so DNS
rebinding cannot swap it). An IPv6 address that embeds an IPv4 one is judged by the IPv4
address it reaches. Whoever runs the server may allow private addresses with
FAL_AUDIO_ALLOW_PRIVATE_URLS=1.
"""

import os
import socket
from typing import List, Optional

ALLOW_ENV = "FAL_AUDIO_ALLOW_PRIVATE_URLS"
# Cloud metadata services (most are link-local already; named so the message says what they are).
METADATA = (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
    "169.254.170.2",    # AWS ECS task metadata
    "fd00:ec2::254",    # AWS IPv6
    "100.100.100.200",  # Alibaba Cloud
)


class Blocked(Exception):
    """A host that resolves to an address Load Audio from URL must not reach."""

    url = None  # the request (a redirect hop, maybe) it was found for, if found before connecting

    def __init__(self, host: str, address: str, reason: str):
        super().__init__(f"{host} resolves to {address}, {reason}")
        self.host, self.address, self.reason = host, address, reason


class Unresolvable(Exception):
    url = None

    def __init__(self, host: str, detail: str):
        super().__init__(f"{host} could not be resolved ({detail})")
        self.host = host


def fal_file(url: str) -> bool:
    """Is `url` a file on fal's own file hosts: its CDN (fal.media and every subdomain, e.g.
    v3.fal.media) or the storage bucket fal's older results are served from? Those are trusted
    as fal itself is; a result file anywhere else is held to the rules here. Parsed as httpx
    parses it for the request (so that no parser difference can pass another host off as fal's)."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    host = parsed.host.rstrip(".").lower()
    return parsed.scheme == "https" and (host == "fal.media" or host.endswith(".fal.media") or (
        host == "storage.googleapis.com" and parsed.raw_path.startswith(b"/falserverless/")))


def private_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def _embedded(ip):
    """(form, [IPv4 addresses reached]) of an IPv6 address that embeds IPv4 ones; form None when it
    embeds none, addresses None when where they sit cannot be told."""
    import ipaddress

    net, v4 = ipaddress.ip_network, lambda bits: ipaddress.IPv4Address(bits & 0xFFFFFFFF)
    value = int(ip)
    if ip.teredo:
        return "Teredo", [ip.teredo[1], ip.teredo[0]]  # the client (where it leads), then the server
    if ip.sixtofour:
        return "6to4", [ip.sixtofour]
    if ip in net("64:ff9b::/96"):
        return "NAT64", [v4(value)]
    if ip in net("64:ff9b:1::/48"):
        return "local-use NAT64", None
    if ip in net("::ffff:0:0:0/96"):
        return "IPv4-translated", [v4(value)]
    if ip in net("::/96") and value > 1:
        return "IPv4-compatible", [v4(value)]
    if (value >> 32) & 0xFDFFFFFF == 0x5EFE:  # interface identifier 0:5efe or 200:5efe
        return "ISATAP", [v4(value)]
    return None, None


def refusal(address) -> Optional[str]:
    """Why an address may not be reached (None: it is a public address). An IPv6 address that
    embeds an IPv4 one (NAT64, 6to4, Teredo, ISATAP, IPv4-compatible or -translated) is judged by
    the IPv4 address it reaches, an IPv4-mapped one is that IPv4 address."""
    import ipaddress

    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        form, reached = _embedded(ip)
        article = "an" if form and form[0] in "AEIOU" else "a"
        if form and reached is None:
            return f"{article} {form} address, whose IPv4 address cannot be told"
        for inner in reached or ():
            reason = refusal(inner)
            if reason:
                return f"{article} {form} address of {inner}, {reason}"
        if form == "Teredo":
            return "a Teredo tunnel address"
        if ip in ipaddress.ip_network("fec0::/10"):
            return "a site-local address"
    if ip in {ipaddress.ip_address(a) for a in METADATA}:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "an unspecified address (this machine)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private network address"
    if not ip.is_global:
        return "not a public address"
    return None


async def resolve(host: str, port: int) -> List[str]:
    """Every address `host` resolves to (what a connection could reach)."""
    import asyncio

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(host, getattr(exc, "strerror", None) or str(exc)) from None
    return list(dict.fromkeys(info[4][0] for info in infos))


async def public_addresses(host: str, port: int) -> List[str]:
    """The addresses of `host`, all of them public, else Blocked (or Unresolvable)."""
    addresses = await resolve(host, port)
    for address in addresses:
        reason = refusal(address)
        if reason:
            raise Blocked(host, address, reason)
    return addresses


def guard(client, pin_connections: bool = True) -> None:
    """Hold an httpx client to public addresses (unless the operator allows private ones): a
    request hook checks the first request and each redirect hop, and pin() checks each direct
    connection's address. A Blocked or Unresolvable raised by the hook names the hop (`.url`)."""
    async def check(request) -> None:
        if private_allowed():
            return
        try:
            await public_addresses(request.url.host, request.url.port or (443 if request.url.scheme == "https" else 80))
        except (Blocked, Unresolvable) as exc:
            exc.url = str(request.url)
            raise

    client.event_hooks["request"].append(check)
    if pin_connections:
        pin(client)


def pin(client) -> None:
    """Make an httpx client's direct connections go only to the public address just checked.

    Proxied requests (HTTPS_PROXY) connect to the operator's proxy, which then resolves the
    host itself: for them the request hook's check is what holds."""
    import httpcore

    class PublicOnly(httpcore.AsyncNetworkBackend):
        def __init__(self, inner):
            self.inner = inner

        async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            if not private_allowed():
                host = (await public_addresses(host, port))[0]
            return await self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options)

        async def connect_unix_socket(self, *args, **kwargs):  # pragma: no cover - never used for URLs
            raise Blocked("a unix socket", "-", "not a network address")

        async def sleep(self, seconds):
            await self.inner.sleep(seconds)

    # httpx builds its default (direct) transport on an httpcore pool; proxies get their own mounts.
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if pool is not None and hasattr(pool, "_network_backend"):
        if not isinstance(pool._network_backend, PublicOnly):
            pool._network_backend = PublicOnly(pool._network_backend)
