"""Persona conversations: replies to direct messages in the persona's voice (docs/chat.md).

No Prefect here: ``engine.ReplyEngine`` answers one stored inbound message (prompt, history, text
chain or offline template, safety, disclosure, platform limits, send); ``tasks/chat.py`` runs it
inside a slot of the ``llm`` limit and ``flows/reply_to_message.py`` is the flow the webhooks start.
"""
