"""Fetch image URLs for clients without letting them reach the private network or exhaust the server.

Redirects are followed by hand so that every hop is validated; the address guard runs again at
connect time on the resolved addresses; the whole fetch, redirects included, has one deadline; the
body is streamed and abandoned as soon as it exceeds the size limit.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import anyio
import httpx

from vlserve.errors import MediaFetchError
from vlserve.media.address_guard import check_url, parse_allowlist, refused
from vlserve.media.guarded_transport import AddressRefused, GuardedClientOwner, Resolver, guarded_client, resolve
from vlserve.media.limits import payload_too_large


def _user_agent() -> str:
    try:
        return f"vlserve/{version('vlserve')}"
    except PackageNotFoundError:
        return "vlserve/dev"


class ImageFetcher(GuardedClientOwner):
    """Downloads image URLs safely; one instance (one connection pool) per server, closed at shutdown."""

    def __init__(
        self,
        *,
        timeout: float,
        max_redirects: int,
        max_bytes: int,
        allowlist: list[str],
        resolver: Resolver = resolve,
    ) -> None:
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.max_bytes = max_bytes
        self._allowlist = parse_allowlist(allowlist)
        self._client = guarded_client(
            self._allowlist,
            timeout=timeout,
            resolver=resolver,
            headers={"User-Agent": _user_agent(), "Accept": "image/*", "Accept-Encoding": "identity"},
        )

    async def fetch(self, url: str, *, param: str, video_max_bytes: int | None = None) -> bytes:
        """The body of ``url`` (http/https), following at most ``max_redirects`` validated redirects; with
        ``video_max_bytes``, a video's (``Accept: video/*``, at most that many bytes)."""
        target = check_url(url, self._allowlist, param=param)
        try:
            with anyio.fail_after(self.timeout):
                return await self._follow(target, param, video_max_bytes)
        except TimeoutError:
            raise self._timed_out(target, param) from None

    async def _follow(self, url: httpx.URL, param: str, video_max_bytes: int | None = None) -> bytes:
        headers = {"Accept": "video/*"} if video_max_bytes is not None else None
        for _ in range(self.max_redirects + 1):
            try:
                async with self._client.stream("GET", url, headers=headers) as response:
                    if response.is_redirect:
                        url = self._redirect_target(url, response.headers["Location"], param)
                        continue
                    if not response.is_success:
                        raise MediaFetchError(f"image URL returned HTTP {response.status_code}", param=param)
                    return await self._read_body(response, param, video_max_bytes)
            except AddressRefused as exc:
                raise refused(exc.host, param=param) from None
            except httpx.TimeoutException:
                raise self._timed_out(url, param) from None
            except httpx.HTTPError:
                raise MediaFetchError(
                    f"could not fetch the image URL: connection to host '{url.host}' failed", param=param
                ) from None
        raise MediaFetchError(
            f"image URL redirected more than {self.max_redirects} times",
            param=param,
            code="too_many_redirects",
        )

    def _redirect_target(self, url: httpx.URL, location: str, param: str) -> httpx.URL:
        """The next hop, validated exactly like the URL the client gave."""
        try:
            target = url.join(location)
        except (httpx.InvalidURL, ValueError):
            raise MediaFetchError("image URL redirected to an invalid URL", param=param) from None
        return check_url(target, self._allowlist, param=param)

    async def _read_body(self, response: httpx.Response, param: str, video_max_bytes: int | None = None) -> bytes:
        limit = self.max_bytes if video_max_bytes is None else video_max_bytes
        too_large = (
            payload_too_large(self.max_bytes, param=param, what="image at the URL")
            if video_max_bytes is None
            else payload_too_large(limit, param=param, what="video at the URL", setting="VLSERVE_VIDEO_MAX_BYTES")
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def _timed_out(self, url: httpx.URL, param: str) -> MediaFetchError:
        return MediaFetchError(
            f"image URL on host '{url.host}' timed out after {self.timeout:g} s",
            param=param,
            code="media_fetch_timeout",
        )
