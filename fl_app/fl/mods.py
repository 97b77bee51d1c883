"""ClientApp mods: SecAgg+ only for the messages of a SecAgg+ round."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key


def secaggplus_when_asked(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Run Flower's `secaggplus_mod` for SecAgg+ stages, pass every other message on.

    `secaggplus_mod` expects a SecAgg+ stage in every train message; this keeps one
    ClientApp for all modes (plaintext, HE, SecAgg+).
    """
    if msg.metadata.message_type == MessageType.TRAIN and msg.has_content():
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None and Key.STAGE in configs:
            return secaggplus_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)
