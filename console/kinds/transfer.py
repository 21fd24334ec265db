"""`transfer`: a warm transfer's summary. initiated → summarizing → ready; the operator then
completes or cancels it. When the LLM cannot be reached and `transfer.summary_fallback` is
"extractive", the transfer still becomes ready, with a summary computed from the transcript."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from console.kinds import SpecError, summary
from console.kinds.context import RunContext
from console.model import Interrupted, PermanentFailure, TransferStatus
from console.store import WriteBatch


class TransferKind:
    name = "transfer"

    def validate_spec(self, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        raise SpecError("kind", "transfers come from `switchboard transfer` or the HTTP intake, "
                                "not from workflow files")

    async def run(self, ctx: RunContext) -> None:
        calls = ctx.calls
        transfer_id = ctx.spec["transfer"]
        t = calls.transfers.get(transfer_id) or await calls.records.get_transfer(transfer_id)
        if t is None:
            raise PermanentFailure(f"transfer {transfer_id} is missing from the database")
        if (ctx.checkpoint or {}).get("summary") or t.status is not TransferStatus.INITIATED and t.summary:
            return  # summarised before a crash: nothing to repeat
        calls.transfers.setdefault(t.process_id, t)
        t.status, t.updated_at = TransferStatus.SUMMARIZING, time.time()
        await ctx.report(10, extra=WriteBatch(transfers={t.id: t}))

        call = await calls.records.get_call(t.call_id, turns=500)
        turns = call.turns if call else []
        local = summary.extractive(turns, t)
        settings = ctx.settings.transfer
        try:
            result = await calls.gateway().chat(summary.messages_for(turns, t), settings.summary_model,
                                                 json_mode=True)
            text, source = summary.from_llm(result.content, local)
        except (Interrupted, PermanentFailure) as e:
            if settings.summary_fallback != "extractive":
                raise
            # A contact centre cannot stop transferring calls because an API is down.
            text, source = dict(local), "extractive"
            text["fallback_reason"] = str(e)
            ctx.log(f"summary computed locally: {e}")
        t.summary, t.summary_source = text, source
        t.status, t.reason, t.updated_at = TransferStatus.READY, None, time.time()
        await ctx.report(100, checkpoint={"summary": True}, extra=WriteBatch(transfers={t.id: t}))


KIND = TransferKind()
