"""User-facing errors, and turning fal's HTTP errors into messages that name model and field."""

from . import secrets


class FalAudioError(Exception):
    """An error whose text is meant for the user (already free of secrets)."""

    def __init__(self, message: str):
        super().__init__(secrets.redact(message))


class CredentialsError(FalAudioError):
    pass


class InvalidInput(FalAudioError, ValueError):
    """Bad node input, caught before any paid request."""


class RequestFailed(FalAudioError):
    pass


class TimeoutExpired(FalAudioError, TimeoutError):
    pass


class EndpointGone(RequestFailed):
    """fal answered 404 Not Found to a submit: it does not (or no longer) serve the endpoint."""


def invalid(node: str, field: str, rule: str) -> InvalidInput:
    return InvalidInput(f"{node}: '{field}' {rule}. Nothing was sent to fal.")


def _detail_text(detail) -> str:
    """FastAPI's 422 detail is a list of {loc, msg}; name each field by its path."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query")]
                field = ".".join(loc)
                msg = item.get("msg", "")
                parts.append(f"{field}: {msg}" if field else str(msg))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, dict):
        return str(detail.get("detail") or detail.get("message") or detail)
    return str(detail)


def from_fal(endpoint: str, exc: BaseException, credentials_help: str = "", submitting: bool = False) -> FalAudioError:
    """Translate a fal_client error into a specific FalAudioError (`submitting`: the error answered the submit)."""
    status = getattr(exc, "status_code", None)
    detail = _detail_text(getattr(exc, "message", None) or str(exc))
    if status == 404 and submitting:
        # No retry can help: the app is gone (retired or renamed) or the id is mistyped. Nothing was queued.
        return EndpointGone(f"fal.ai no longer serves {endpoint}: it answered 404 Not Found ({detail}) to the "
                            "request, so nothing was run or charged.")
    if status == 422:
        return RequestFailed(f"{endpoint} rejected the input: {detail}")
    if status in (401, 403):
        return RequestFailed(
            f"fal.ai refused the API key for {endpoint} (HTTP {status}). Check that the key is valid "
            f"and has access. {credentials_help}"
        )
    if status is not None:
        return RequestFailed(f"{endpoint} failed on fal.ai (HTTP {status}): {detail}")
    return RequestFailed(f"{endpoint}: could not reach fal.ai ({type(exc).__name__}: {detail})")
