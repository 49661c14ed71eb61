"""fal Result by Request ID: a finished request's result again, from its endpoint and request id, with no new
request (nothing is submitted, nothing is paid). A result the journal keeps is decoded from its kept file;
otherwise fal's stored result is fetched (GET of the request's result), its audio files (all of them: the stems of
a separation, the takes of a batch) kept like any result, and booked as a $0 row of the ledger."""

import json

from . import widgets as w


class FalResultByRequestID:
    DISPLAY_NAME = "fal Result by Request ID"
    DESCRIPTION = ("The result of a request fal already finished, by its endpoint and request id (e.g. copied from the "
                   "fal panel or fal's dashboard): its audio (every audio file of the result as one batch, e.g. the "
                   "stems of a separation; 'files' says which item is which), its text (for text results) and fal's "
                   "whole answer as JSON. No new request is made and nothing is charged.")
    CATEGORY = "audio/fal"
    FUNCTION = "fetch"
    RETURN_TYPES = ("AUDIO", "STRING", "STRING", "STRING")
    RETURN_NAMES = ("audio", "text", "response_json", "files")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "endpoint_id": w.text("The endpoint id the request was made to, owner/app[/path] as on fal's model "
                                   "page (e.g. fal-ai/lyria2). Only that shape: no URL, host or query.",
                                   default="fal-ai/lyria2"),
                "request_id": w.text("fal's request id (letters, digits, '-' and '_'), as the fal panel, the node's "
                                     "status line or fal's dashboard shows it."),
            },
            "optional": {"fal_client": w.FAL_CLIENT},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    async def fetch(self, endpoint_id, request_id, fal_client=None, unique_id=None):
        from ..core.log import own_requests

        with own_requests():  # httpx does not log the fetch (core/log.py)
            return await self._fetch(endpoint_id, request_id, fal_client, unique_id)

    async def _fetch(self, endpoint, request_id, fal_client, unique_id):
        import asyncio
        from pathlib import Path

        from ..core import comfy, errors, secrets
        from ..jobs.keep import Keeper
        from ..jobs.options import CallOptions, usable_output_folder
        from ..jobs.results import MAIN, audio_files
        from ..jobs.waiting import retried
        from ..media import audio as audio_io
        from ..money import journal
        from ..transport import credentials, endpoint_id
        from ..transport.gateway import Gateway, http_status, valid_request_id

        name = self.DISPLAY_NAME
        endpoint = endpoint_id.check(endpoint, name, "endpoint_id")
        request_id = str(request_id).strip()
        if not valid_request_id(request_id):
            raise errors.invalid(name, "request_id", f"is {request_id[:80]!r}, which is not a fal request id "
                                                     "(8-128 letters, digits, '-' and '_')")
        options = fal_client or CallOptions()
        usable_output_folder(options, name)
        progress = comfy.Progress(unique_id)
        gateway = Gateway(credentials.resolve_key(options.profile))

        def locate(response):  # the first file is kept as the main one (as the node that made it keeps it)
            found = audio_files(response)
            return {MAIN if index == 0 else where: url for index, (where, url) in enumerate(found)}

        keeper = Keeper(endpoint, gateway, options, locate, audio_io.decode, progress.text)
        book = options.books()
        key = journal.identity(endpoint, {"result_of": request_id})
        earlier = next((r for r in await asyncio.to_thread(book.results, 1, request_id)
                        if r["endpoint"] == endpoint and r["files"]), None)
        entry = earlier and await asyncio.to_thread(book.get, earlier["identity"])
        files = {n: Path(p) for n, p in earlier["files"].items()} if earlier else {}
        if entry is not None and entry.response is not None and all(path.is_file() for path in files.values()):
            response = entry.response
            await book.call(book.reused, key, endpoint, request_id)
        else:
            progress.text(f"Fetching the result of request {request_id}")
            try:
                response = await retried(f"{endpoint}: fetching the result",
                                         lambda: gateway.result(endpoint, request_id), server_errors=True)
            except Exception as exc:  # noqa: BLE001 - told as a message naming the model
                if comfy.is_interrupt(exc):
                    raise
                if http_status(exc) == 404:
                    raise errors.RequestFailed(
                        f"{name}: fal has no result of request {request_id} for {endpoint} (check that both are "
                        "the ones the request was made with; fal keeps results for a limited time). Nothing was "
                        "charged.") from None
                raise errors.from_fal(endpoint, exc, credentials.how_to_set()) from None
            if not isinstance(response, dict):
                raise errors.RequestFailed(f"{name}: fal's result of request {request_id} is not a JSON object")
            files = await keeper.keep(response, request_id)
            await book.call(book.fetched, key, endpoint, request_id, response, files, paid=True)
        audios = await keeper.decode(files, response)
        text = response.get("text") if isinstance(response.get("text"), str) else ""
        if not audios and not text:
            raise errors.RequestFailed(f"{name}: the result of request {request_id} holds no audio file and no text; "
                                       "its fields are " + ", ".join(sorted(map(str, response))[:20]))
        if audios:  # every file, in the result's order, as one batch
            audio = audio_io.stack(list(audios.values()))
        else:  # a text result: an empty clip, so that a connected audio socket still gets AUDIO
            import torch

            audio = {"waveform": torch.zeros((1, 1, 0)), "sample_rate": 44100}
        first = audio_files(response)
        names = [where if where != MAIN else first[0][0] if first else "audio" for where in audios]
        listing = "\n".join(f"{index}: {where}" for index, where in enumerate(names))
        progress.text(f"Result of request {request_id[:8]} · $0 (no new request)"
                      + (f" · {len(names)} audio files as one batch" if len(names) > 1 else ""))
        return (audio, text, secrets.redact(json.dumps(response, indent=2, ensure_ascii=False)), listing)
